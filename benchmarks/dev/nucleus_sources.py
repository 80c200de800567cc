"""Which nucleus matches the truth more often: the finder's own (the seed) or the one the field
route reports (the crop's segmentation where it agrees with the seed), and how the abnormal cells
that are not matched fail (issue 22). The true masks are read, for this count only.

    python benchmarks/dev/nucleus_sources.py --sets data/fields-herlev-val data/fields-herlev-val2
    -> benchmarks/results/dev/nucleus_sources.md
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set  # noqa: E402


def best_iou(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(IoU, area over the truth's) of the label over ``truth`` that overlaps it best; (0, 0)."""
    best = (0.0, 0.0)
    for k in np.unique(labels[truth]):
        if k == 0:
            continue
        mine = labels == k
        iou = (mine & truth).sum() / (mine | truth).sum()
        if iou > best[0]:
            best = (float(iou), float(mine.sum() / truth.sum()))
    return best


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.workflows.fields import find_cells, resolve_finder

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val", "data/fields-herlev-val2"])
    args = parser.parse_args()
    finder = resolve_finder("learned")
    lines = ["# The finder's nucleus against the reported one, and the abnormal cells not matched (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/nucleus_sources.py --sets {' '.join(args.sets)}`", "",
             "Default finder and classifier, screening point; a true nucleus is matched at IoU >= 0.5.", "",
             ("| set | true nuclei | reported nucleus matches | finder's matches | only the reported | only the finder's |"
              " abnormal not matched | of those: none found | IoU 0.3-0.5, too large (x > 1.5) | IoU 0.3-0.5, too small"
              " (x < 0.67) | other |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.sets:
        root = ROOT / name
        with open(root / "cells.csv", newline="") as table:
            label_of = {(row["field"], int(row["page"])): row["label"] for row in csv.DictReader(table)}
        counts = np.zeros(10, int)
        for path, rgb, pages in field_set(name):
            reported = segment_field(rgb, operating_point="screening").nuclei
            seeds = np.zeros(rgb.shape[:2], np.int32)
            for k, cell in enumerate(find_cells(rgb, finder), start=1):
                r0, c0, r1, c1 = cell.box
                seeds[r0:r1, c0:c1][cell.nucleus] = k
            for i, page in enumerate(pages):
                truth = page == 2
                (iou, area), (seed_iou, _) = best_iou(reported, truth), best_iou(seeds, truth)
                ours, theirs = iou >= 0.5, seed_iou >= 0.5
                counts[:5] += [1, ours, theirs, ours and not theirs, theirs and not ours]
                if label_of[(path.stem, i)] == "abnormal" and not ours:
                    counts[5] += 1
                    if iou == 0:
                        counts[6] += 1
                    elif iou >= 0.3 and area > 1.5:
                        counts[7] += 1
                    elif iou >= 0.3 and area < 0.67:
                        counts[8] += 1
                    else:
                        counts[9] += 1
        lines.append(f"| {name} | " + " | ".join(str(int(c)) for c in counts) + " |")
        print(lines[-1])
    write_dev_result("nucleus_sources", lines)


if __name__ == "__main__":
    main()
