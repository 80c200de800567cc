"""Choosing the fine-tuning recipe of ``learn_from_corrections`` on a development split that the
benchmark never scores: 4 ISBI development fields (DEV_FIELDS, 19 complete cells), two folds
(correct the cells of two fields, score the other two). benchmarks/bench_corrections.py leaves
these fields out entirely.

    PYTHONPATH=src python benchmarks/dev/tune_corrections.py --out benchmarks/results/dev/corrections_tuning.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cervseg.io.datasets import read_isbi_cell_crops
from napari_cervseg.measure.scores import segmentation_scores
from napari_cervseg.segment.student import load_segmenter
from napari_cervseg.workflows.corrections import CorrectionConfig, learn_from_corrections

#: the development fields: hyperparameters are chosen on these, the benchmark never uses them
DEV_FIELDS = ("isbi14_field05", "isbi14_field19", "isbi14_field25", "isbi14_field38")
FOLDS = ((("isbi14_field05", "isbi14_field38"), ("isbi14_field19", "isbi14_field25")),
         (("isbi14_field19", "isbi14_field25"), ("isbi14_field05", "isbi14_field38")))
#: the first recipe; each variant changes it
FIRST = {"steps": 60, "lr": 1e-3, "batch_size": 8, "crop": 80, "scale_jitter": 0.15, "freeze_bn": False}
VARIANTS = {
    "steps60 lr1e-3 crop80 jitter0.15": {},
    "whole cell (no crop)": {"crop": 0},
    "BatchNorm frozen": {"freeze_bn": True},
    "lr 3e-4": {"lr": 3e-4},
    "steps 120": {"steps": 120},
    "steps 30": {"steps": 30},
    "no zoom jitter": {"scale_jitter": 0.0},
    "whole cell, steps 30": {"crop": 0, "steps": 30},
    "whole cell, batch 4": {"crop": 0, "batch_size": 4},
    "whole cell, BatchNorm frozen": {"crop": 0, "freeze_bn": True},
    "crop 112": {"crop": 112},
    "whole cell, batch 4, BatchNorm frozen": {"crop": 0, "batch_size": 4, "freeze_bn": True},
    "whole cell, batch 4, BatchNorm frozen, seed 1": {"crop": 0, "batch_size": 4, "freeze_bn": True, "seed": 1},
    "whole cell, batch 4, BatchNorm frozen, unweighted loss": {"crop": 0, "batch_size": 4, "freeze_bn": True,
                                                               "balance_classes": False},
    "whole cell, batch 4, BatchNorm frozen, unweighted loss, seed 1": {"crop": 0, "batch_size": 4, "freeze_bn": True,
                                                                       "balance_classes": False, "seed": 1},
}


def _nc(labels):
    return float((labels == 2).sum()) / max(int((labels >= 1).sum()), 1)


def score(seg, cells):
    preds = [seg.predict(c.image) for c in cells]
    s = [segmentation_scores(p, c.mask) for p, c in zip(preds, cells, strict=True)]
    rel = [abs(_nc(p) - _nc(c.mask)) / _nc(c.mask) for p, c in zip(preds, cells, strict=True)]
    return (float(np.mean([x["nucleus"]["dice"] for x in s])), float(np.mean([x["cytoplasm"]["dice"] for x in s])),
            float(np.median(rel)))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="../shared/data/fields-isbi-dev")
    p.add_argument("--variants", nargs="*", default=None)
    p.add_argument("--out", default="benchmarks/results/dev/corrections_tuning.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    crops = [c for c in read_isbi_cell_crops(args.data) if c.field in DEV_FIELDS]
    base = load_segmenter("default")
    rows = []
    base_scores = [score(base, [c for c in crops if c.field in test]) for _, test in FOLDS]
    rows.append({"variant": "base (no fine-tuning)", "nucleus": np.mean([b[0] for b in base_scores]),
                 "cytoplasm": np.mean([b[1] for b in base_scores]),
                 "nc_median_rel_error": np.mean([b[2] for b in base_scores]), "seconds": 0.0})
    print(rows[-1], flush=True)
    for name in args.variants or VARIANTS:
        cfg = CorrectionConfig(**{**FIRST, **VARIANTS[name]})
        got, secs = [], []
        for train, test in FOLDS:
            tr = [c for c in crops if c.field in train]
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                path = learn_from_corrections([c.image for c in tr], [c.mask for c in tr], Path(d) / "x", config=cfg)
                secs.append(time.perf_counter() - t0)
                got.append(score(load_segmenter(path), [c for c in crops if c.field in test]))
        rows.append({"variant": name, "nucleus": float(np.mean([g[0] for g in got])),
                     "cytoplasm": float(np.mean([g[1] for g in got])),
                     "nc_median_rel_error": float(np.mean([g[2] for g in got])), "seconds": float(np.mean(secs)),
                     "folds": got})
        print(rows[-1], flush=True)
    lines = ["# Fine-tuning recipe on the development fields (not the benchmark's cells)", "",
             (f"`PYTHONPATH=src python {' '.join(sys.argv)}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())};"
             " torch 1 thread on a shared 2-core machine: seconds are inflated)"), "",
             (f"Development fields {', '.join(DEV_FIELDS)} ({len(crops)} complete cells); two folds: the cells"
             " of two fields corrected, those of the other two scored; mean of the folds. Base: the bundled"
             " `default` segmenter."), "",
             "| variant | nucleus Dice | cytoplasm Dice | N/C median rel. error | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['nucleus']:.3f} | {r['cytoplasm']:.3f} | {r['nc_median_rel_error']:.3f} |"
              f" {r['seconds']:.1f} |" for r in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
