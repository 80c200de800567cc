"""Development check (issue 22, session 17): what the nucleus-less size rule drops.

A blob of p(cell) that holds no found nucleus is kept as a cell only when it is at least as large
as the smallest cell found with a nucleus in the same image (segment/finder.py,
NUCLEUS_LESS_AS_LARGE_AS_A_CELL; written after looking at the ISBI development fields' speckle).
On the development Herlev fields one abnormal bare nucleus (pale, no p(nucleus) on it, p(cell)
0.85) is missed whole that way. This lists every blob the rule drops: the finder run with the
rule off, the nucleus-less cells it adds; per blob its area (full-resolution px), its area over
the field's median found nucleus, the share of it on the stained area (the classic foreground
mask the route uses), its mean grey over the field's background (median grey off the stained
area), and, where masks exist, the largest share of it on one true cell and on one true nucleus.
Nothing is chosen here; the masks only say what each blob is.

    python benchmarks/dev/nucleus_less_dropped.py --sets SET [SET ...] --name NAME
    -> benchmarks/results/dev/nucleus_less_dropped_NAME.md
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "dev"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_images  # noqa: E402


def _placed(cell, shape) -> np.ndarray:
    r0, c0, r1, c1 = cell.box
    full = np.zeros(shape, bool)
    full[r0:r1, c0:c1] = cell.extent
    return full


def main() -> None:
    from napari_cervseg.segment import finder as finder_module
    from napari_cervseg.segment.cells import foreground_mask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    finder = finder_module.load_finder()
    rows = []
    for name in args.sets:
        for path, rgb, pages in field_images(name):
            stained = foreground_mask(rgb)
            finder_module.NUCLEUS_LESS_AS_LARGE_AS_A_CELL = True
            # (the size rule alone: rule 8's exception for blobs on the stained area, where built, off)
            on_stained = getattr(finder_module, "NUCLEUS_LESS_ON_STAINED", 0)
            finder_module.NUCLEUS_LESS_ON_STAINED = 0
            kept = finder.find(rgb, foreground=stained)
            finder_module.NUCLEUS_LESS_ON_STAINED = on_stained
            finder_module.NUCLEUS_LESS_AS_LARGE_AS_A_CELL = False
            every = finder.find(rgb, foreground=stained)
            finder_module.NUCLEUS_LESS_AS_LARGE_AS_A_CELL = True
            kept_boxes = {c.box for c in kept if not c.nucleus.any()}
            nuclei = [int(c.nucleus.sum()) for c in kept if c.nucleus.any()]
            median_nucleus = float(np.median(nuclei)) if nuclei else float("nan")
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
            background = float(np.median(grey[~stained])) if (~stained).any() else float("nan")
            for cell in every:
                if cell.nucleus.any() or cell.box in kept_boxes:
                    continue
                blob = _placed(cell, rgb.shape[:2])
                area = int(blob.sum())
                on_cell = on_nucleus = float("nan")
                if pages is not None:
                    on_cell = max(float((blob & (p >= 1)).sum()) for p in pages) / area
                    on_nucleus = max(float((blob & (p == 2)).sum()) for p in pages) / area
                rows.append((Path(name).name, path.stem, cell.box, area, area / median_nucleus,
                             float(stained[blob].mean()), float(grey[blob].mean()) / background,
                             on_cell, on_nucleus))
            print(path, len(rows), flush=True)
    lines = ["# What the nucleus-less size rule drops (issue 22, session 17)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/nucleus_less_dropped.py --sets {' '.join(args.sets)}"
              f" --name {args.name}`"), "",
             ("Each blob of p(cell) without a found nucleus that the rule drops (kept with the rule off). Area in"
              " full-resolution px; 'x nucleus': over the field's median found nucleus; grey: its mean over the"
              " field's background grey; on cell / on nucleus: the largest share on one true cell / nucleus."), "",
             "| set | field | box | area | x nucleus | on stained | grey | on cell | on nucleus |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s, field, box, area, rel, on_stained, grey, on_cell, on_nucleus in rows:
        lines.append(f"| {s} | {field} | {box} | {area} | {rel:.2f} | {on_stained:.2f} | {grey:.2f} |"
                     f" {on_cell:.2f} | {on_nucleus:.2f} |")
    write_dev_result(f"nucleus_less_dropped_{args.name}", lines)


if __name__ == "__main__":
    main()
