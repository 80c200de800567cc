"""Where MAX_SLIDE_SPREAD (segment/cells.py) sits: per image, the foreground threshold the usual
rule gives (median + 6 robust SDs of the lower half of the colour distance to the slide) on the
development fields, the unlabelled real fields and the crowded composed fields.

    .venv/bin/python benchmarks/dev/slide_noise_spread.py   # -> benchmarks/results/dev/slide_noise_spread.md
(data/fields-herlev-crowded from benchmarks/compose_crowded_fields.py)
"""

from pathlib import Path

import cv2
import numpy as np

from napari_cervseg.segment.cells import MAX_SLIDE_SPREAD, _slide_threshold, background_colour, lab_image

ROOT = Path(__file__).resolve().parents[2]
SETS = {"Herlev dev": ROOT.parent / "shared/data/fields-herlev-dev/images",
        "ISBI dev": ROOT.parent / "shared/data/fields-isbi-dev/images",
        "real unlabelled": ROOT.parent / "shared/data/fields-real-unlabelled/images",
        "crowded composed": ROOT / "data/fields-herlev-crowded/images"}
lines = [f"# Lower-half threshold per image (MAX_SLIDE_SPREAD = {MAX_SLIDE_SPREAD})", "",
         "| set | images | min | max |", "|---|---|---|---|"]
for name, folder in SETS.items():
    values = []
    for path in sorted(folder.glob("*.png")):
        lab = lab_image(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        distance = cv2.GaussianBlur(np.linalg.norm(lab - background_colour(lab), axis=-1), (0, 0), 2.0)
        values.append(_slide_threshold(distance, 50.0))
    if values:
        lines.append(f"| {name} | {len(values)} | {min(values):.1f} | {max(values):.1f} |")
out = ROOT / "benchmarks/results/dev/slide_noise_spread.md"
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
