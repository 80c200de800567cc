"""What the field route leaves out on the four real unlabelled fields (issue 22): the nuclei the
learned finder's turned second look did not confirm and whose crop was called normal. No masks:
counts, and a picture of each left-out nucleus (a 96 px window around it, outlined) to look at.

    python benchmarks/dev/left_out_real.py [--operating-point argmax]
    -> benchmarks/results/dev/left_out_real[_argmax].md, ...left_out_real[_argmax].png
"""

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "fields-real-unlabelled" / "images"
HALF = 48


def main() -> None:
    import argparse

    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser()
    parser.add_argument("--operating-point", default="screening", help="screening (default) or argmax")
    args = parser.parse_args()
    point = None if args.operating_point == "argmax" else args.operating_point
    # the second look is an option, off by default: this check is about it
    import napari_cervseg.segment.finder as finder_module
    finder_module.CONFIRM_TURNED = True
    suffix = "" if args.operating_point == "screening" else f"_{args.operating_point}"
    from napari_cervseg.workflows.fields import find_cells

    lines = ["# What the field route leaves out on the real unlabelled fields (issue 22; no masks)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/left_out_real.py --operating-point"
              f" {args.operating_point}`"), "",
             (f"Default finder and classifier, {args.operating_point} point. Unconfirmed: nuclei the finder's turned second look"
             " did not see; left out: those of them whose crop was called normal (`FieldResult.left_out`)."), "",
             "| field | nuclei found | unconfirmed | left out | cells reported | abnormal | without verdict |",
             "|---|---|---|---|---|---|---|"]
    tiles = []
    for path in sorted(REAL.glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        found = [c for c in find_cells(rgb, "learned") if c.nucleus.any()]
        result = segment_field(rgb, operating_point=point)
        unconfirmed = [c for c in found if not c.is_confirmed()]
        padded = np.pad(rgb, ((HALF, HALF), (HALF, HALF), (0, 0)))
        for row, col in result.left_out:  # each pictured with the found nucleus it came from
            cell = min(unconfirmed, key=lambda c: np.hypot(c.centre[0] - row, c.centre[1] - col))
            r, c = int(round(row)), int(round(col))
            window = padded[r:r + 2 * HALF, c:c + 2 * HALF].copy()
            nucleus = np.zeros((rgb.shape[0] + 2 * HALF, rgb.shape[1] + 2 * HALF), np.uint8)
            b0, b1, b2, b3 = cell.box
            nucleus[b0 + HALF:b2 + HALF, b1 + HALF:b3 + HALF] = cell.nucleus
            contours, _ = cv2.findContours(np.ascontiguousarray(nucleus[r:r + 2 * HALF, c:c + 2 * HALF]),
                                           cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(window, contours, -1, (0, 200, 0), 1)
            tiles.append(window)
        lines.append(f"| {path.stem} | {len(found)} | {len(unconfirmed)} | {len(result.left_out)} | {result.n_cells} |"
                     f" {len(result.abnormal_ids)} | {len(result.no_verdict_ids)} |")
        print(lines[-1], flush=True)
    if tiles:
        per_row = 10
        rows = [np.hstack(tiles[i:i + per_row] + [np.zeros_like(tiles[0])] * (per_row - len(tiles[i:i + per_row])))
                for i in range(0, len(tiles), per_row)]
        out = ROOT / "benchmarks" / "results" / "dev" / f"left_out_real{suffix}.png"
        cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
        lines += ["", f"`left_out_real{suffix}.png`: the {len(tiles)} left-out nuclei, outlined in green, 96 px around each."]
    write_dev_result(f"left_out_real{suffix}", lines)


if __name__ == "__main__":
    main()
