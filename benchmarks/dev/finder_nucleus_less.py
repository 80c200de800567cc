"""Development check (issue 22): which of the learned finder's cells become false positives in
``segment_field``; those it found with a nucleus, or the nucleus-less blobs of p(cell)?

    .venv/bin/python benchmarks/dev/finder_nucleus_less.py data/fields-herlev-val [--finder F] [--tag T]

Run on the validation-split fields (``benchmarks/dev/compose_val_fields.py``), not the development
fields. Also scores, on the same run, the nuclei with the nucleus-less cells left out and with the
finder's own nucleus instead of the segmenter's. Appends to
benchmarks/results/dev/finder_nucleus_less.md.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit  # noqa: E402
from bench_fields import match_nuclei  # noqa: E402

from napari_cervseg import segment_field  # noqa: E402
from napari_cervseg.workflows.fields import find_cells  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("fields")
    parser.add_argument("--finder", default="learned")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.fields)
    counts = {}
    variants = ("as is", "finder's own nucleus", "nucleus-less cells left out")
    tp = dict.fromkeys(variants, 0)
    n_pred = dict.fromkeys(variants, 0)
    n_true = 0
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        pages = tifffile.imread(root / "cells" / f"{path.stem}.tif")
        pages = pages[None] if pages.ndim == 2 else pages
        n_true += len(pages)
        found = find_cells(rgb, args.finder)
        result = segment_field(rgb, finder=args.finder, operating_point="screening")
        assert result.n_cells == len(found)  # cell k is found[k - 1]
        matched = {k for _, k in match_nuclei(result.nuclei, pages)}
        for k, cell in enumerate(found, 1):
            key = (f"{'with' if cell.nucleus.any() else 'without'} a finder nucleus,"
                   f" {'matched' if k in matched else 'not matched'}")
            counts[key] = counts.get(key, 0) + 1
        for variant in variants:
            labels = np.zeros(rgb.shape[:2], np.int32)
            for k, cell in enumerate(found, 1):
                has = bool(cell.nucleus.any())
                if variant == "nucleus-less cells left out" and not has:
                    continue
                n_pred[variant] += 1
                if variant == "finder's own nucleus" and has:
                    r0, c0, r1, c1 = cell.box
                    mask = np.zeros(rgb.shape[:2], bool)
                    mask[r0:r1, c0:c1] = cell.nucleus
                else:
                    mask = result.nuclei == k
                labels[mask & (labels == 0)] = k
            tp[variant] += len(match_nuclei(labels, pages))
    commit = code_commit()
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    lines = [(f"## {root.name}, finder {args.finder}, code {commit}{' + uncommitted src' if dirty else ''}"
              f" {args.tag}"), "",
             f"`python benchmarks/dev/finder_nucleus_less.py {args.fields} --finder {args.finder}`", "",
             "| found cell | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    lines += ["", "| nuclei scored | predicted | nucleus P | R | F1 |", "|---|---|---|---|---|"]
    for variant in variants:
        p, r = tp[variant] / max(1, n_pred[variant]), tp[variant] / max(1, n_true)
        lines.append(f"| {variant} | {n_pred[variant]} | {p:.3f} | {r:.3f} | {2 * p * r / max(1e-9, p + r):.3f} |")
    text = "\n".join(lines) + "\n\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "dev" / "finder_nucleus_less.md"
    if not out.exists():
        out.write_text("# The learned finder's nucleus-less cells (issue 22; validation-split fields)\n\n")
    with open(out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
