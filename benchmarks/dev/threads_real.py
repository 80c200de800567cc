"""What taking threads off the missed cytoplasm (MISSED_THREAD_WIDTH) removes from the found cells'
missed cytoplasm on the real unlabelled fields of another laboratory, and on the ISBI development
fields (issue 22). No masks exist for the real fields and none is read here: this is a check by
eye, not a score. Each cell whose missed cytoplasm changes is pictured: the field around it, what
is given with the cut (green) and what the cut takes away (magenta).

    python benchmarks/dev/threads_real.py -> benchmarks/results/dev/threads_real.md, threads_real.png
"""

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import RESULTS, code_commit, write_dev_result  # noqa: E402
from bench_fields import DATA  # noqa: E402

TILE = 200


def missed_mask(cell, shape) -> np.ndarray:
    """A found cell's missed (lone) cytoplasm in the field's frame."""
    out = np.zeros(shape, bool)
    if cell.missed is not None:
        dr, dc, mask = cell.missed
        r0, c0 = cell.box[0] + dr, cell.box[1] + dc
        out[r0:r0 + mask.shape[0], c0:c0 + mask.shape[1]] = mask
    return out


def extent_mask(cell, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    r0, c0, r1, c1 = cell.box
    out[r0:r1, c0:c1] = cell.extent
    return out


def picture(rgb, extent, kept, removed, label) -> np.ndarray:
    """The field around one cell: its extent outlined in white, the missed cytoplasm still given
    in green and what the cut takes away in magenta."""
    grey = rgb.copy()
    grey[kept] = (0.5 * grey[kept] + (0, 110, 0)).astype(np.uint8)
    grey[removed] = (0.4 * grey[removed] + (150, 0, 150)).astype(np.uint8)
    contours, _ = cv2.findContours(extent.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(grey, contours, -1, (255, 255, 255), 1)
    rows, cols = np.nonzero(extent | kept | removed)
    r0, r1 = max(0, rows.min() - 15), min(rgb.shape[0], rows.max() + 16)
    c0, c1 = max(0, cols.min() - 15), min(rgb.shape[1], cols.max() + 16)
    side = max(r1 - r0, c1 - c0)
    tile = np.zeros((side, side, 3), np.uint8)
    tile[:r1 - r0, :c1 - c0] = grey[r0:r1, c0:c1]
    tile = cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_AREA)
    cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
    return tile


def main() -> None:
    import napari_cervseg.segment.finder as finder_module

    finder = finder_module.load_finder("default")
    width = finder_module.MISSED_THREAD_WIDTH or 5  # the candidate's width when it is off
    lines = ["# Threads off the missed cytoplasm, on fields without masks (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/threads_real.py`", "",
             (f"MISSED_THREAD_WIDTH 0 (off) against {width}. Pixels of the lone cells' missed cytoplasm (full"
             " resolution); each changed cell is pictured in `threads_real.png` (green: still given,"
             " magenta: taken away, white: the cell's polygon extent)."), "",
             "| field | cells | cells whose missed cytoplasm changes | missed px off | on | taken away |",
             "|---|---|---|---|---|---|"]
    fields = sorted((DATA / "fields-real-unlabelled" / "images").glob("*.png"))
    fields += sorted((DATA / "fields-isbi-dev" / "images").glob("*.png"))
    tiles = []
    for path in fields:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        shape = rgb.shape[:2]
        found = {}
        for w in (0, width):
            finder_module.MISSED_THREAD_WIDTH = w
            found[w] = finder.find(rgb)
        if len(found[0]) != len(found[width]):
            sys.exit(f"{path.stem}: the cut changed the cells found ({len(found[0])} / {len(found[width])})")
        changed, off, on = 0, 0, 0
        for before, after in zip(found[0], found[width], strict=True):
            whole, cut = missed_mask(before, shape), missed_mask(after, shape)
            off += int(whole.sum())
            on += int(cut.sum())
            if (whole != cut).any():
                changed += 1
                share = 1 - cut.sum() / max(1, whole.sum())
                tiles.append(picture(rgb, extent_mask(before, shape), cut, whole & ~cut,
                                     f"{path.stem} -{whole.sum() - cut.sum()} px ({share:.0%})"))
        lines.append(f"| {path.stem} | {len(found[0])} | {changed} | {off} | {on} | {(off - on) / off if off else 0:.3f} |")
        print(lines[-1])
    write_dev_result("threads_real", lines)
    if tiles:
        per_row = 6
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % per_row)
        sheet = np.vstack([np.hstack(tiles[i:i + per_row]) for i in range(0, len(tiles), per_row)])
        cv2.imwrite(str(RESULTS / "dev" / "threads_real.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
