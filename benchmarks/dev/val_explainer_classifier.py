"""Does a better-ranking classifier give better explanations to segment from? (issue 15, item 2)

    PYTHONPATH=src .venv/bin/python benchmarks/dev/val_explainer_classifier.py

Algorithm 1 (Grad-CAM++) and Algorithm 2 (LRP rule set 1) driven by the bundled default classifier
and by the bundled ensemble3 (the default + two more networks, mean of probabilities; its CAM over
all members' feature maps, its LRP the members' mean relevance), on the VALIDATION split of the
default's card (masks for measuring only). Writes benchmarks/results/dev/val_explainer_classifier.md.
"""

from pathlib import Path

import numpy as np

from napari_cervseg import load_model, segment_cell, segmentation_scores
from napari_cervseg.io.datasets import default_data_root, read_dataset

default = load_model("default", device="cpu")
val = set(default.card["training"]["split"]["val"])
samples = [s for s in read_dataset(default_data_root()) if s.name in val and s.mask_path]
configs = [(m, method) for method in ("gradcam++", "lrp-ruleset1") for m in ("default", "ensemble3")]
scores = {c: [] for c in configs}
for s in samples:
    image, truth = s.load_image(), s.load_mask()
    for model, method in configs:
        sc = segmentation_scores(segment_cell(image, model=model, method=method).labels, truth)
        scores[(model, method)].append((sc["nucleus"]["dice"], sc["cytoplasm"]["dice"]))
lines = ["# Explanations of a better-ranking classifier as the segmentation's source (validation split)\n",
         (f"`PYTHONPATH=src .venv/bin/python benchmarks/dev/val_explainer_classifier.py`; {len(samples)} validation"
          " cells with masks (masks for measuring only).\n"),
         "| method | classifier | nucleus Dice | cytoplasm Dice | mean |", "|---|---|---|---|---|"]
for (model, method), v in scores.items():
    a = np.array(v)
    lines.append(f"| {method} | {model} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {a.mean():.3f} |")
out = Path(__file__).parents[1] / "results" / "dev" / "val_explainer_classifier.md"
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
