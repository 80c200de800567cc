"""Cheap weakly supervised variants of the self-trained student, on the VALIDATION split (masks for
measuring and for choosing among these variants only; nothing is trained): test-time augmentation
(none / the 3 flips used so far / all 8 flips and rotations) x how the probabilities become labels
(argmax / GrabCut of the cell seeded by p(cell) / GrabCut of cell and nucleus), and thresholds on
p(cell) = p(cytoplasm) + p(nucleus). Rows without a cell_threshold use the argmax of the three classes.

    PYTHONPATH=src .venv/bin/python benchmarks/dev/val_student_variants.py

Writes benchmarks/results/student_variants_val.md / .json. Seconds are the student's own (the
explanation every method shows is the same for all variants and timed apart); the machine's 2 cores
were shared with other jobs, so seconds are inflated.
"""

import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_cervseg import load_model, segmentation_scores
from napari_cervseg.io.datasets import default_data_root, read_dataset
from napari_cervseg.segment.student import (
    STUDENT_REFINE,
    STUDENT_TTA,
    labels_from_probabilities,
    load_segmenter,
)

torch.set_num_threads(1)
model = load_model("default")
val = set(model.card["training"]["split"]["val"])
samples = [s for s in read_dataset(default_data_root()) if s.name in val and s.mask_path]
seg = load_segmenter("default")
rows: dict[str, list] = {}
seconds: dict[str, list] = {}


def add(name, labels, truth, t):
    sc = segmentation_scores(labels, truth)
    rows.setdefault(name, []).append((sc["nucleus"]["dice"], sc["cytoplasm"]["dice"]))
    seconds.setdefault(name, []).append(t)


for i, s in enumerate(samples):
    image, truth = s.load_image(), s.load_mask()
    rgb = image[..., :3] if image.ndim == 3 else np.stack([image] * 3, -1)
    for tta in STUDENT_TTA:
        t0 = time.perf_counter()
        probs = seg.probabilities(rgb, tta)
        t_probs = time.perf_counter() - t0
        for refine in STUDENT_REFINE:
            t0 = time.perf_counter()
            labels = labels_from_probabilities(rgb, probs, refine)
            add(f"tta={tta}, refine={refine}", labels, truth, t_probs + time.perf_counter() - t0)
        if tta == "flips":
            for thr in (0.1, 0.2, 0.3, 0.4, 0.6):
                for refine in ("none", "grabcut-cell"):
                    t0 = time.perf_counter()
                    labels = labels_from_probabilities(rgb, probs, refine, cell_threshold=thr)
                    add(f"tta={tta}, refine={refine}, cell_threshold={thr}", labels, truth,
                        t_probs + time.perf_counter() - t0)
    print(i + 1, len(samples), file=sys.stderr, flush=True)

summary = {}
for name, v in rows.items():
    a = np.array(v)
    summary[name] = {"nucleus_dice": float(a[:, 0].mean()), "cytoplasm_dice": float(a[:, 1].mean()),
                     "mean": float(a.mean()), "seconds_median": float(np.median(seconds[name]))}
cmd = "PYTHONPATH=src .venv/bin/python benchmarks/dev/val_student_variants.py"
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines = ["# Self-trained student: cheap variants on the validation split\n",
         (f"`{cmd}` ({date}); {len(samples)} validation cells with masks (masks for measuring and for choosing"
         " among these variants only). Seconds: the student's part only (median per cell, 1 torch thread,"
         " 2 CPU cores shared with other jobs: inflated).\n"),
         "| variant | nucleus Dice | cytoplasm Dice | mean | s / cell (student) |", "|---|---|---|---|---|"]
for name, r in summary.items():
    lines.append(f"| {name} | {r['nucleus_dice']:.3f} | {r['cytoplasm_dice']:.3f} | {r['mean']:.3f} |"
                 f" {r['seconds_median']:.3f} |")
out = Path(__file__).parents[1] / "results"
(out / "student_variants_val.md").write_text("\n".join(lines) + "\n")
(out / "student_variants_val.json").write_text(json.dumps({"command": cmd, "date": date, "n": len(samples),
                                                           "variants": summary}, indent=2))
print("\n".join(lines))
