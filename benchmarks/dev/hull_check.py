"""Would a found cell's convex hull (cut to p(cell) and to the image) match its true cell better
than its extent (issue 22)? The true masks are read, for this count only: a design check.

    python benchmarks/dev/hull_check.py --sets data/fields-herlev-val2 fields-isbi-dev
    -> benchmarks/results/dev/hull_check.md
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import dice, extent_mask, field_set, match_nuclei  # noqa: E402


def hull(mask: np.ndarray) -> np.ndarray:
    points = cv2.findNonZero(mask.astype(np.uint8))
    out = np.zeros(mask.shape, np.uint8)
    if points is not None:
        cv2.fillPoly(out, [cv2.convexHull(points)], 1)
    return out.astype(bool)


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.segment.finder import load_finder

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val2", "fields-isbi-dev"])
    args = parser.parse_args()
    finder = load_finder("default")
    lines = ["# Extent against its convex hull cut to p(cell) (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/hull_check.py --sets {' '.join(args.sets)}`", "",
             "| set | matched cells | mean Dice, extent | mean Dice, hull cut to p(cell) | hull better by > 0.02 | worse by > 0.02 |",
             "|---|---|---|---|---|---|"]
    for name in args.sets:
        before, after = [], []
        for _path, rgb, pages in field_set(name):
            result = segment_field(rgb, operating_point="screening")
            scale = finder.choose_scale(rgb)
            probs, _ = finder.maps(rgb, scale)
            p_cell = cv2.resize(probs[2], (rgb.shape[1], rgb.shape[0])) >= 0.5
            for i, k in match_nuclei(result.nuclei, pages):
                extent, truth = extent_mask(result, k, rgb.shape[:2]), pages[i] > 0
                before.append(dice(extent, truth))
                after.append(dice(extent | (hull(extent) & p_cell), truth))
        b, a = np.array(before), np.array(after)
        lines.append(f"| {name} | {b.size} | {b.mean():.3f} | {a.mean():.3f} | {int((a > b + 0.02).sum())} |"
                     f" {int((a < b - 0.02).sum())} |")
        print(lines[-1])
    write_dev_result("hull_check", lines)


if __name__ == "__main__":
    main()
