"""Segment every image of a folder from Python and collect one descriptors table.

    python examples/batch_folder.py IMAGE_FOLDER [OUT.csv]

(The same as `cervseg segment IMAGE_FOLDER --out DIR`, written out for scripting.)
"""

import csv
import sys
from pathlib import Path

from napari_cervseg import load_model, measure, segment_cell
from napari_cervseg.io.images import ImageError, read_image

folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "src/napari_cervseg/sample_data")
out_csv = Path(sys.argv[2] if len(sys.argv) > 2 else "descriptors.csv")
model = load_model("default")  # load once, reuse for every cell
rows = []
for path in sorted(folder.glob("*.png")):
    try:
        image = read_image(path)
    except ImageError as exc:
        print(f"skipped: {exc}")
        continue
    result = segment_cell(image, model=model)
    rows.append({"image": path.name, "class": result.predicted_class, "probability": round(result.probability, 3),
                 **measure(result.labels, image)})
    print(f"{path.name}: {result.predicted_class} N/C {rows[-1]['nc_ratio']:.2f}")
with out_csv.open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print(f"wrote {out_csv}")
