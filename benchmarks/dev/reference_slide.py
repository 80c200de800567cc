"""The reference slide colour of the field route's white balance (issue 22): the median, over the
bundled classifier's **training-split** Herlev images, of each image's bare-slide colour
(``segment.cells.slide_colour``, no mask read). A field's crops are brought to this slide colour
before each found cell is segmented and classified, so that a field on a tinted slide is seen as
the networks' training images were, on average.

    python benchmarks/dev/reference_slide.py -> benchmarks/results/dev/reference_slide.md
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402


def main() -> None:
    from napari_cervseg.segment.cells import slide_colour

    data = ROOT.parent / "shared" / "data" / "herlev"
    card = json.loads((ROOT / "src" / "napari_cervseg" / "weights" / "default.json").read_text())
    classes = {r["name"]: r["herlev_class"] for r in csv.DictReader((data / "manifest.csv").read_text().splitlines())}
    colours = []
    for name in card["training"]["split"]["train"]:
        rgb = np.asarray(Image.open(data / "images" / classes[name] / f"{name}.png").convert("RGB"))
        colours.append(slide_colour(rgb))
    colours = np.asarray(colours)
    median = np.median(colours, 0)
    lines = ["# The reference slide colour of the field route's white balance (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/reference_slide.py`", "",
             f"{len(colours)} training-split images of the bundled classifier's card.", "",
             "| statistic | R | G | B |", "|---|---|---|---|",
             "| median (the reference) | " + " | ".join(f"{v:.1f}" for v in median) + " |",
             "| 10th percentile | " + " | ".join(f"{v:.1f}" for v in np.percentile(colours, 10, 0)) + " |",
             "| 90th percentile | " + " | ".join(f"{v:.1f}" for v in np.percentile(colours, 90, 0)) + " |", "",
             "Brightness (mean of R, G, B) and chromaticity (RGB / brightness) of the same slides:", "",
             "| statistic | brightness | chroma R | chroma G | chroma B |", "|---|---|---|---|---|"]
    brightness = colours.mean(1)
    chroma = colours / brightness[:, None]
    for q in (10, 50, 90):
        lines.append(f"| {q}th percentile | {np.percentile(brightness, q):.1f} | "
                     + " | ".join(f"{v:.3f}" for v in np.percentile(chroma, q, 0)) + " |")
    lines.append("")
    write_dev_result("reference_slide", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
