"""The self-trained stage on the VALIDATION split (masks used for measuring only; the only look
taken before the test run), against its teacher and the colour baseline; extra segmenter files
given as arguments are compared too (e.g. a second self-training round).

    .venv/bin/python benchmarks/dev/val_selftrain.py [runs/seg_round2.safetensors[:cell_threshold=0.2] ...]

Writes benchmarks/results/selftrain_val.md.
"""

import sys
from pathlib import Path

import numpy as np

from napari_cervseg import load_model, segment_cell, segmentation_scores
from napari_cervseg.io.datasets import default_data_root, read_dataset
from napari_cervseg.workflows.evaluate import parse_method_spec

model = load_model("default")
val = set(model.card["training"]["split"]["val"])
samples = [s for s in read_dataset(default_data_root()) if s.name in val and s.mask_path]
configs = {"gradcam++ (teacher)": {"method": "gradcam++"}, "colour-baseline": {"method": "colour-baseline"},
           "self-trained (bundled, its card's threshold)": {"method": "self-trained"}}
for arg in sys.argv[1:]:  # PATH or PATH:cell_threshold=0.2,tta=none (options as in method specs)
    path, _, rest = arg.partition(":")
    configs[f"self-trained ({arg})"] = {"method": "self-trained", "segmenter": path,
                                        **parse_method_spec("self-trained:" + rest)[1]}
scores = {name: [] for name in configs}
for s in samples:
    image, truth = s.load_image(), s.load_mask()
    for name, opts in configs.items():
        sc = segmentation_scores(segment_cell(image, model=model, **opts).labels, truth)
        scores[name].append((sc["nucleus"]["dice"], sc["cytoplasm"]["dice"]))
lines = ["# Self-trained stage on the validation split\n",
         (f"`python benchmarks/dev/val_selftrain.py {' '.join(sys.argv[1:])}`; {len(samples)} validation cells"
         " with masks (masks for measuring only).\n"),
         "| configuration | nucleus Dice | cytoplasm Dice | mean |", "|---|---|---|---|"]
for name, v in scores.items():
    a = np.array(v)
    lines.append(f"| {name} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {a.mean():.3f} |")
out = Path(__file__).parents[1] / "results" / "selftrain_val.md"
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
