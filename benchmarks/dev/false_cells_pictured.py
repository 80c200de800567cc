"""Development check (issue 22, session 15): what the false cells off every true nucleus are.

On a composed field a reported cell matching no true nucleus is a false cell; when its nucleus
lies on no true nucleus at all it is either debris, a fold or granule the finder took for a
nucleus, or a nucleus the source image's mask calls cytoplasm (a Herlev mask marks one cell's
nucleus; a second nucleus in the same crop is painted as that cell's cytoplasm). Each such cell
is pictured (160 px around its nucleus, shown twice as large): true cells outlined blue, true
nuclei green, the reported nucleus red, its extent yellow; listed with the source cell under it.
The masks are read for this picture only; nothing is chosen from it.

    python benchmarks/dev/false_cells_pictured.py --sets data/fields-herlev-val data/fields-herlev-val2 --name val12
    -> benchmarks/results/dev/false_cells_NAME.md / .png
"""

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import RESULTS, code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set, match_nuclei  # noqa: E402

HALF = 80
OFF_TRUE_NUCLEI = 0.1  # at most this share of the reported nucleus on a true nucleus


def _outline(mask: np.ndarray) -> np.ndarray:
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0


def main() -> None:
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    tiles, rows = [], []
    for name in args.sets:
        root = Path(name)
        with open(root / "cells.csv") as f:
            sources = {(r["field"], int(r["page"])): (r["name"], r["herlev_class"]) for r in csv.DictReader(f)}
        for path, rgb, pages in field_set(name):
            result = segment_field(rgb, model="default", operating_point="screening", finder="learned")
            matched = {k for _, k in match_nuclei(result.nuclei, pages)}
            drawn = rgb.copy()
            for page in pages:
                drawn[_outline(page >= 1)] = (0, 0, 255)
            for page in pages:
                drawn[_outline(page == 2)] = (0, 200, 0)
            for row in result.table:
                k = row["cell_id"]
                nucleus = result.nuclei == k
                if k in matched or not nucleus.any():
                    continue
                on_true = max(((nucleus & (page == 2)).sum() for page in pages), default=0) / nucleus.sum()
                if on_true > OFF_TRUE_NUCLEI:
                    continue
                under = [i for i, page in enumerate(pages) if (nucleus & (page == 1)).sum() >= 0.5 * nucleus.sum()]
                source = "; ".join(f"{sources[(path.stem, i)][0]} ({sources[(path.stem, i)][1]})" for i in under)
                (y0, x0, y1, x1), extent = result.extent(k)
                picture = drawn.copy()
                placed = np.zeros(rgb.shape[:2], bool)
                placed[y0:y1, x0:x1] = extent
                picture[_outline(placed)] = (255, 255, 0)
                picture[_outline(nucleus)] = (255, 0, 0)
                cy, cx = np.argwhere(nucleus).mean(0).astype(int)
                tile = np.zeros((2 * HALF, 2 * HALF, 3), np.uint8)
                crop = picture[max(0, cy - HALF):cy + HALF, max(0, cx - HALF):cx + HALF]
                tile[:crop.shape[0], :crop.shape[1]] = crop
                tile = cv2.resize(tile, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
                cv2.putText(tile, str(len(tiles) + 1), (4, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
                tiles.append(tile)
                rows.append(f"| {len(tiles)} | {root.name} {path.stem} | {k} | {row['predicted_class']} |"
                            f" {int(nucleus.sum())} | {source or 'background'} |")
            print(path, len(tiles), flush=True)
    cols = 6
    sheet = np.zeros((((len(tiles) + cols - 1) // cols) * 4 * HALF, cols * 4 * HALF, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * 4 * HALF:(r + 1) * 4 * HALF, c * 4 * HALF:(c + 1) * 4 * HALF] = tile
    picture_path = RESULTS / "dev" / f"false_cells_{args.name}.png"
    cv2.imwrite(str(picture_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    lines = ["# False cells off every true nucleus, pictured (issue 22)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/false_cells_pictured.py --sets {' '.join(args.sets)}"
              f" --name {args.name}`"), "",
             (f"Default settings, screening point. `{picture_path.name}`: true cells blue, true nuclei green,"
             " the reported nucleus red, its extent yellow (160 px around the nucleus, twice as large)."), "",
             "| # | field | cell | called | nucleus px | lies on the cytoplasm of (source cell) |",
             "|---|---|---|---|---|---|", *rows]
    write_dev_result(f"false_cells_{args.name}", lines)


if __name__ == "__main__":
    main()
