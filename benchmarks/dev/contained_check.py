"""Are the false cells the ones whose extent lies inside another found cell's extent (issue 22)?
For every reported cell, the largest share of its extent that one other cell's extent covers, for
the cells that match a true nucleus and for those that do not. The true masks are read, for this
count only: a design check.

    python benchmarks/dev/contained_check.py --sets data/fields-herlev-val2 fields-isbi-dev
    -> benchmarks/results/dev/contained_check.md
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set, match_nuclei  # noqa: E402

SHARES = (0.8, 0.9, 0.95, 0.99)


def main() -> None:
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val2", "fields-isbi-dev"])
    parser.add_argument("--nucleus", action="store_true", help="the share of each cell's nucleus instead")
    args = parser.parse_args()
    lines = ["# Reported cells inside another's extent: matched or false? (issue 22)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/contained_check.py --sets {' '.join(args.sets)}"
              f"{' --nucleus' if args.nucleus else ''}`"), "",
             (f"Cells whose {'nucleus' if args.nucleus else 'extent'} another single cell's extent covers by at"
              " least this share."), "",
             "| set | kind | cells | " + " | ".join(f">= {s}" for s in SHARES) + " |",
             "|---|---|---|" + "---|" * len(SHARES)]
    for name in args.sets:
        shares = {True: [], False: []}
        for _path, rgb, pages in field_set(name):
            result = segment_field(rgb, operating_point="screening")
            matched = {k for _, k in match_nuclei(result.nuclei, pages)}
            extents = {k: result.extent(k) for k in range(1, result.n_cells + 1)}
            for k, ((r0, c0, r1, c1), mask) in extents.items():
                if args.nucleus:  # the share of the cell's nucleus, not of its extent
                    mask = mask & (result.nuclei[r0:r1, c0:c1] == k)
                    if not mask.any():
                        continue
                best = 0.0
                for j, ((a0, b0, a1, b1), other) in extents.items():
                    y0, x0, y1, x1 = max(r0, a0), max(c0, b0), min(r1, a1), min(c1, b1)
                    if j == k or y1 <= y0 or x1 <= x0:
                        continue
                    both = mask[y0 - r0:y1 - r0, x0 - c0:x1 - c0] & other[y0 - a0:y1 - a0, x0 - b0:x1 - b0]
                    best = max(best, both.sum() / mask.sum())
                shares[k in matched].append(best)
        for kind, values in ((True, shares[True]), (False, shares[False])):
            v = np.array(values)
            lines.append(f"| {name} | {'matched' if kind else 'false'} | {v.size} | "
                         + " | ".join(str(int((v >= s).sum())) for s in SHARES) + " |")
            print(lines[-1])
    write_dev_result("contained_check_nucleus" if args.nucleus else "contained_check", lines)


if __name__ == "__main__":
    main()
