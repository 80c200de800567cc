"""Development check (issue 22): the nuclei a finder finds itself (no per-cell segmentation, so
seconds rather than minutes), nucleus P / R / F1 at IoU >= 0.5, for choosing among finder
variants on the validation-split fields (`benchmarks/dev/compose_val_fields.py`).

    .venv/bin/python benchmarks/dev/finder_own_nuclei.py FIELDS [FIELDS ...] --finder F [F ...]

F: learned, classic, a .safetensors file, multiscale[:FILE], multiscale+classic[:FILE],
union[:FILE]. Appends to
benchmarks/results/dev/finder_own_nuclei.md.
"""

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit  # noqa: E402
from bench_fields import DATA, dev_finder, match_nuclei  # noqa: E402

from napari_cervseg.workflows.fields import find_cells  # noqa: E402


def score(root: Path, finder) -> dict:
    tp = n_pred = n_true = 0
    t0 = time.perf_counter()
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        pages = tifffile.imread(root / "cells" / f"{path.stem}.tif")
        pages = pages[None] if pages.ndim == 2 else pages
        labels = np.zeros(rgb.shape[:2], np.int32)
        cells = [c for c in find_cells(rgb, finder) if c.nucleus.any()]
        for k, cell in enumerate(cells, 1):
            r0, c0, r1, c1 = cell.box
            box = labels[r0:r1, c0:c1]
            box[cell.nucleus & (box == 0)] = k
        tp += len(match_nuclei(labels, pages))
        n_pred += len(cells)
        n_true += len(pages)
    p, r = tp / max(1, n_pred), tp / max(1, n_true)
    return {"p": p, "r": r, "f1": 2 * p * r / max(1e-9, p + r), "pred": n_pred, "true": n_true,
            "seconds": time.perf_counter() - t0}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("fields", nargs="+")
    parser.add_argument("--finder", nargs="+", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    commit = code_commit()
    lines = [(f"## code {commit}: `python benchmarks/dev/finder_own_nuclei.py {' '.join(args.fields)} --finder"
             f" {' '.join(args.finder)}`"), "", "| finder | fields | found (with a nucleus) | P | R | F1 | s |",
             "|---|---|---|---|---|---|---|"]
    for name in args.finder:
        finder = dev_finder(name)
        for fields in args.fields:
            root = Path(fields) if Path(fields).is_dir() else DATA / fields
            r = score(root, finder)
            line = (f"| {name} | {root.name} | {r['pred']} / {r['true']} true | {r['p']:.3f} | {r['r']:.3f} |"
                    f" {r['f1']:.3f} | {r['seconds']:.0f} |")
            print(line, flush=True)
            lines.append(line)
    out = ROOT / "benchmarks" / "results" / "dev" / "finder_own_nuclei.md"
    if not out.exists():
        out.write_text("# Finders' own nuclei (issue 22; no per-cell segmentation)\n\n")
    with open(out, "a") as f:
        f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
