"""What the field route's nucleus errors are, on the validation-split Herlev fields (issue 22).

Every predicted cell that matches no true nucleus (IoU >= 0.5) is put in one class: a nucleus-less
cell (a blob of p(cell) kept without a nucleus), a nucleus lying on a true nucleus it does not
match (drawn too small, too large or split), a nucleus on a true cell's cytoplasm only, or one on
no true cell (debris, slide). Every true cell not matched likewise: no predicted nucleus on its
nucleus at all, or one that does not reach IoU 0.5. The masks are read for this count only; it
says where the errors are, it chooses nothing.

    python benchmarks/dev/field_errors.py [--sets data/fields-herlev-val data/fields-herlev-val2]
    -> benchmarks/results/dev/field_errors.md
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import match_nuclei  # noqa: E402


def classify_errors(result, pages: np.ndarray) -> tuple[Counter, Counter]:
    pairs = match_nuclei(result.nuclei, pages)
    matched_pred = {k for _, k in pairs}
    matched_true = {i for i, _ in pairs}
    true_nuclei = np.any(pages == 2, 0)
    true_cells = np.any(pages > 0, 0)
    false_pos, false_neg = Counter(), Counter()
    for row in result.table:
        k = int(row["cell_id"])
        if k in matched_pred:
            continue
        own = result.nuclei == k
        if not own.any():
            false_pos["nucleus-less cell"] += 1
        elif (own & true_nuclei).sum() >= 0.2 * own.sum():
            false_pos["on a true nucleus, IoU < 0.5"] += 1
        elif (own & true_cells).sum() >= 0.5 * own.sum():
            false_pos["on a true cell's cytoplasm"] += 1
        else:
            false_pos["on no true cell"] += 1
    for i, page in enumerate(pages):
        if i in matched_true:
            continue
        hit = (result.nuclei[page == 2] > 0).mean() if (page == 2).any() else 0.0
        false_neg["true nucleus partly found (IoU < 0.5)" if hit >= 0.2 else "true nucleus not found"] += 1
    return false_pos, false_neg


def main() -> None:
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val", "data/fields-herlev-val2"])
    args = parser.parse_args()
    lines = ["# Nucleus errors of the field route on validation-split fields (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/field_errors.py --sets {' '.join(args.sets)}`", "",
             "Default finder and classifier, screening point. Masks read for this count only.", ""]
    for name in args.sets:
        root = ROOT / name
        fp, fn, n_true, n_pred = Counter(), Counter(), 0, 0
        for path in sorted((root / "images").glob("*.png")):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            pages = tifffile.imread(root / "cells" / f"{path.stem}.tif")
            pages = pages[None] if pages.ndim == 2 else pages
            result = segment_field(rgb, operating_point="screening")
            a, b = classify_errors(result, pages)
            fp += a
            fn += b
            n_true += len(pages)
            n_pred += result.n_cells
        lines += [f"### {name}: {n_true} true cells, {n_pred} predicted", "",
                  "| error | kind | count |", "|---|---|---|"]
        lines += [f"| false cell | {k} | {v} |" for k, v in fp.most_common()]
        lines += [f"| missed cell | {k} | {v} |" for k, v in fn.most_common()]
        lines.append("")
        print("\n".join(lines[-(len(fp) + len(fn) + 4):]))
    write_dev_result("field_errors", lines)


if __name__ == "__main__":
    main()
