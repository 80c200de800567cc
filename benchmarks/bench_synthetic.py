"""Synthetic-cell figures of one test network (the tests' bounds come from the spread over many:
``benchmarks/bench_test_bounds.py``, README "Tests").

    .venv/bin/python benchmarks/bench_synthetic.py

Same cells and same small classifier as the tests (``synthetic_set(24, seed=7)``, first 12 for
the algorithms; ``train_synthetic_classifier()``). Writes benchmarks/results/synthetic.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

# the synthetic cells are a test helper: they live beside the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic import coarse_heatmap, synthetic_set, train_synthetic_classifier

from napari_cervseg import segment_cell
from napari_cervseg.measure.scores import segmentation_scores
from napari_cervseg.segment.grouping import group
from napari_cervseg.segment.refine import combine
from napari_cervseg.segment.two_pass import refine_rough

METHODS = ("gradcam++", "gradcam++-paper", "gradcam", "lrp-ruleset1", "lrp-ruleset2")


def main():
    torch.set_num_threads(2)
    cells = synthetic_set(24, seed=7)
    model = train_synthetic_classifier()
    out = {"train_accuracy": model.card["train_accuracy"], "algorithms": {}}
    for method in METHODS:
        scores = [segmentation_scores(segment_cell(rgb, model=model, method=method).labels, truth)
                  for rgb, truth, _ in cells[:12]]
        out["algorithms"][method] = {c: float(np.mean([s[c]["dice"] for s in scores])) for c in ("nucleus", "cytoplasm")}
    rough, refined = [], []
    for rgb, truth, _ in cells:
        r = group(coarse_heatmap(truth), 3, "gmm")
        rough.append(segmentation_scores(r, truth)["mean"]["dice"])
        refined.append(segmentation_scores(combine(*refine_rough(rgb, r)), truth)["mean"]["dice"])
    out["grabcut_refinement"] = {"rough_mean_dice": float(np.mean(rough)), "refined_mean_dice": float(np.mean(refined))}
    path = Path(__file__).parent / "results" / "synthetic"
    path.with_suffix(".json").write_text(json.dumps(out, indent=2))
    lines = ["# Synthetic cells (the tests' bounds)\n", "Command: `python benchmarks/bench_synthetic.py`\n",
             f"Small classifier's training accuracy: {out['train_accuracy']:.3f}\n",
             "| method | nucleus Dice | cytoplasm Dice |", "|---|---|---|"]
    lines += [f"| {m} | {v['nucleus']:.3f} | {v['cytoplasm']:.3f} |" for m, v in out["algorithms"].items()]
    g = out["grabcut_refinement"]
    lines.append(f"\nGrabCut refinement of a coarse rough map (24 cells, mean Dice): {g['rough_mean_dice']:.3f}"
                 f" -> {g['refined_mean_dice']:.3f}")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
