"""Development check (issue 22): how textured real cytoplasm is, and how the learned finders
cope with synthetic cells of flat colour or of that texture.

    .venv/bin/python benchmarks/dev/synthetic_texture.py [--finders runs/finder_v2.safetensors ...]

1. Texture of real cells: on every 8th Herlev cell with a mask (at most 120), the std inside the
   eroded cytoplasm of (G2 - G8) / G8, Gs a Gaussian blur of the grey image at sigma s. The masks
   are read only to locate cytoplasm for this image statistic, which sets the `grain` of the
   test's synthetic fields (tests/test_finder.py); nothing of any model is fitted to them.
2. The bundled-finder test's field (six cells, overlap, a cell cut by the border, debris) over 12
   seeds at grain 0 (flat colour), 0.025, 0.04 and 0.05, 1 and 2 torch threads: cells with exactly
   one found nucleus inside their own, cells found twice, finds on debris.
Writes benchmarks/results/dev/synthetic_texture.md.
"""

import argparse
import glob
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from synthetic import field_with_debris, nuclei_found_per_cell  # noqa: E402

from napari_cervseg.segment.finder import load_finder  # noqa: E402

HERLEV = ROOT.parent / "shared" / "data" / "herlev"


def cytoplasm_ripple() -> np.ndarray:
    vals = []
    for p in sorted(glob.glob(str(HERLEV / "images" / "*" / "*.png")))[::8][:120]:
        m = HERLEV / "masks" / Path(p).name
        if not m.exists():
            continue
        g = cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2GRAY).astype(np.float32)
        mask = cv2.imread(str(m), 0)
        levels = np.unique(mask)
        if g.shape != mask.shape or len(levels) < 3:
            continue
        lo, mid = cv2.GaussianBlur(g, (0, 0), 8), cv2.GaussianBlur(g, (0, 0), 2)
        ripple = (mid - lo) / np.maximum(lo, 1)
        cyto = cv2.erode((mask == levels[1]).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        if cyto.sum() > 200:
            vals.append(float(ripple[cyto].std()))
    return np.array(vals)


def found_once(finder, grain: float, seeds=range(12)):
    once = twice = debris = total = 0
    per_seed = []
    for seed in seeds:
        rgb, pages = field_with_debris(seed, grain)
        found = finder.find(rgb)
        hits = nuclei_found_per_cell(found, pages)
        once += sum(h == 1 for h in hits)
        per_seed.append(sum(h == 1 for h in hits))
        twice += sum(h > 1 for h in hits)
        total += len(hits)
        debris += sum(c.centre[1] > 450 for c in found)
    return once, twice, debris, total, per_seed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--finders", nargs="+", default=["default"])
    args = ap.parse_args()
    commit = code_commit()
    ripple = cytoplasm_ripple()
    lines = ["# Synthetic cells' texture and the learned finders (issue 22)", "",
             f"## code {commit}: `python benchmarks/dev/synthetic_texture.py --finders {' '.join(args.finders)}`", "",
             (f"Herlev cytoplasm ripple, {len(ripple)} cells: 10th percentile {np.percentile(ripple, 10):.3f}, "
              f"median {np.median(ripple):.3f}, 90th percentile {np.percentile(ripple, 90):.3f}"), "",
             "| finder | grain | torch threads | found once (12 seeds) | per seed (of 6) | worst 6 seeds | found twice | on debris |",
             "|---|---|---|---|---|---|---|---|"]
    for name in args.finders:
        finder = load_finder(name)
        for grain in (0.0, 0.025, 0.04, 0.05):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                once, twice, debris, total, per_seed = found_once(finder, grain)
                worst = sum(sorted(per_seed)[:6])
                lines.append(f"| {name} | {grain} | {threads} | {once} / {total} | {' '.join(map(str, per_seed))} |"
                             f" {worst} / 36 | {twice} | {debris} |")
                print(lines[-1], flush=True)
    write_dev_result("synthetic_texture", lines)


if __name__ == "__main__":
    main()
