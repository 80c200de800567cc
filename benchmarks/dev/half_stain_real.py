"""Development check (issue 22, session 14): what the refinement of each cell's free boundary
(workflows/fields.py's HALF_STAIN_LEVEL / HALF_STAIN_STEPS) does on real fields without masks.
Each field is segmented at the defaults with the refinement off and on; per field, how many cells
moved and the mean change of their extent's area; one picture per field (its central 500 x 500 px
at 1.5x): the extents without the refinement in red, with it in cyan (where they agree, cyan).

    python benchmarks/dev/half_stain_real.py [--set fields-real-unlabelled]
    -> benchmarks/results/dev/half_stain_real.md and half_stain_real.png
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

SIDE = 500


def outlines(picture, result, origin, colour):
    for k in range(1, result.n_cells + 1):
        (r0, c0, r1, c1), mask = result.extent(k)
        full = np.zeros(result.cells.shape, np.uint8)
        full[r0:r1, c0:c1] = mask
        a0, b0 = origin
        contours, _ = cv2.findContours(np.ascontiguousarray(full[a0:a0 + SIDE, b0:b0 + SIDE]), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, colour, 1)


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.workflows import fields

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="fields-real-unlabelled")
    args = parser.parse_args()
    root = Path(args.set) if Path(args.set).is_dir() else ROOT.parent / "shared" / "data" / args.set
    steps = fields.HALF_STAIN_STEPS
    rows, tiles = [], []
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        fields.HALF_STAIN_STEPS = 0
        before = segment_field(rgb, operating_point="screening")
        fields.HALF_STAIN_STEPS = steps
        after = segment_field(rgb, operating_point="screening")
        changes = []
        for k in range(1, min(before.n_cells, after.n_cells) + 1):
            a, b = before.extent(k)[1].sum(), after.extent(k)[1].sum()
            if a != b or before.extent(k)[0] != after.extent(k)[0]:
                changes.append(b / a - 1)
        rows.append(f"| {path.stem} | {before.n_cells} | {after.n_cells} | {len(changes)} |"
                    f" {100 * np.mean(changes) if changes else 0:+.1f} % |"
                    f" {100 * min(changes, default=0):+.1f} / {100 * max(changes, default=0):+.1f} % |")
        h, w = rgb.shape[:2]
        origin = (max(0, h // 2 - SIDE // 2), max(0, w // 2 - SIDE // 2))
        picture = cv2.cvtColor(np.ascontiguousarray(rgb[origin[0]:origin[0] + SIDE, origin[1]:origin[1] + SIDE]),
                               cv2.COLOR_RGB2BGR)
        outlines(picture, before, origin, (0, 0, 255))
        outlines(picture, after, origin, (255, 255, 0))
        picture = cv2.resize(picture, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_NEAREST)
        cv2.putText(picture, path.stem, (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
        tiles.append(picture)
        print(rows[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "dev" / "half_stain_real.png"
    half = (len(tiles) + 1) // 2
    grid = [np.hstack(tiles[i:i + 2] + [np.zeros_like(tiles[0])] * (2 - len(tiles[i:i + 2])))
            for i in range(0, 2 * half, 2)]
    cv2.imwrite(str(out), np.vstack(grid))
    lines = ["# The refined cell edges on real fields (issue 22, session 14)", "",
             f"## code {code_commit()}: `python benchmarks/dev/half_stain_real.py --set {args.set}`", "",
             (f"Defaults, screening point; HALF_STAIN_LEVEL = {fields.HALF_STAIN_LEVEL}, HALF_STAIN_STEPS = {steps}"
              " against 0. Pictures: `half_stain_real.png` (central 500 x 500 px of each field at 1.5x; red: the"
              " extents without the refinement, cyan: with it)."), "",
             ("| field | cells (off) | cells (on) | cells whose extent moved | mean area change of those |"
             " least / most |"), "|---|---|---|---|---|---|", *rows]
    print(write_dev_result("half_stain_real", lines))


if __name__ == "__main__":
    main()
