"""How much of the found cells' extents the stained-area cut removes on the real unlabelled fields
of another laboratory (issue 22; no masks exist for them, so this is a check, not a score): the
bundled finder with and without CUT_TO_STAINED.

    git apply benchmarks/dev/cut_to_stained.diff   # the candidate, not adopted
    python benchmarks/dev/stained_cut_real.py -> benchmarks/results/dev/stained_cut_real.md
"""

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import DATA  # noqa: E402


def main() -> None:
    import napari_cervseg.segment.finder as finder_module

    if not hasattr(finder_module, "CUT_TO_STAINED"):
        sys.exit("apply benchmarks/dev/cut_to_stained.diff first (the candidate was not adopted)")
    finder = finder_module.load_finder("default")
    lines = ["# The stained-area cut on the real unlabelled fields (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/stained_cut_real.py`", "",
             "| field | cells (without / with the cut) | extent pixels without | with | removed |",
             "|---|---|---|---|---|"]
    totals = np.zeros(2)
    for path in sorted((DATA / "fields-real-unlabelled" / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        counts, pixels = [], []
        for cut in (False, True):
            finder_module.CUT_TO_STAINED = cut
            found = finder.find(rgb)
            counts.append(len(found))
            pixels.append(sum(int(c.extent.sum()) + (0 if c.missed is None else int(c.missed[2].sum()))
                              + (0 if c.clump_missed is None else int(c.clump_missed[2].sum())) for c in found))
        totals += pixels
        lines.append(f"| {path.stem} | {counts[0]} / {counts[1]} | {pixels[0]} | {pixels[1]} |"
                     f" {1 - pixels[1] / max(pixels[0], 1):.3f} |")
        print(lines[-1])
    lines.append(f"| all | | {int(totals[0])} | {int(totals[1])} | {1 - totals[1] / max(totals[0], 1):.3f} |")
    write_dev_result("stained_cut_real", lines)


if __name__ == "__main__":
    main()
