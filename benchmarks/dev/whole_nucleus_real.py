"""Development check (issue 22, session 16): what rule 7 (the crop's nucleus taken whole past the
finder's outline, `fields.NUCLEUS_WHOLE_IN_CROP`) changes on the four real unlabelled fields.
No masks: counts, the cells whose nucleus changed and by how much, and a picture of them
(their nucleus without the rule in yellow, with it in red) to look at.

    python benchmarks/dev/whole_nucleus_real.py
    -> benchmarks/results/dev/whole_nucleus_real.md, whole_nucleus_real.png
"""

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import RESULTS, code_commit, write_dev_result  # noqa: E402

import napari_cervseg.workflows.fields as fields_module  # noqa: E402
from napari_cervseg import segment_field  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "fields-real-unlabelled" / "images"


def summary(result):
    counts = result.summary()
    return counts["n_cells"], counts["n_abnormal"], counts["n_no_verdict"]


def main():
    lines = ["# Rule 7 on the real unlabelled fields (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/whole_nucleus_real.py`", "",
             ("Default settings, screening point. A cell's nucleus 'changed' when its nucleus in the"
             " `nuclei` labels differs by more than 5 % of its area (cells paired by the nucleus"
             " without the rule they overlap most)."), "",
             ("| field | cells / abnormal / no verdict, without | with | nuclei changed | their area with / without"
             " (median, range) |"), "|---|---|---|---|---|"]
    tiles = []
    for path in sorted(REAL.glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        fields_module.NUCLEUS_WHOLE_IN_CROP = False
        without = segment_field(rgb, operating_point="screening")
        fields_module.NUCLEUS_WHOLE_IN_CROP = True
        with_rule = segment_field(rgb, operating_point="screening")
        ratios, changed = [], np.zeros(rgb.shape[:2], bool)
        for k in range(1, with_rule.n_cells + 1):
            mine = with_rule.nuclei == k
            if not mine.any():
                continue
            ids, counts = np.unique(without.nuclei[mine], return_counts=True)
            counts[ids == 0] = 0
            if not counts.any():
                continue
            before = without.nuclei == ids[np.argmax(counts)]
            if abs(int(mine.sum()) - int(before.sum())) > 0.05 * before.sum():
                ratios.append(mine.sum() / before.sum())
                changed |= mine | before
        lines.append(f"| {path.stem} | {' / '.join(map(str, summary(without)))} | {' / '.join(map(str, summary(with_rule)))}"
                     f" | {len(ratios)} | " + (f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                                              if ratios else "-") + " |")
        picture = rgb.copy()
        for mask, colour in ((without.nuclei > 0, (255, 220, 0)), (with_rule.nuclei > 0, (230, 20, 20))):
            contours, _ = cv2.findContours((mask & changed).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(picture, contours, -1, colour, 2)
        tiles.append(cv2.resize(picture, (512, 512), interpolation=cv2.INTER_AREA))
    fields_module.NUCLEUS_WHOLE_IN_CROP = True
    grid = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:4], 1)], 0)
    cv2.imwrite(str(RESULTS / "dev" / "whole_nucleus_real.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    write_dev_result("whole_nucleus_real", lines)


if __name__ == "__main__":
    main()
