"""Why are normal cells called abnormal on composed fields? (issue 22, development check)

For every normal cell of the Herlev development fields: p(abnormal) from the default classifier on
its own Herlev image, and on the crop the field route cuts around the cell the learned finder
found for it (matched by nucleus IoU >= 0.5), with the cell's Herlev class. Masks are read only to
match the found cell to the true one, as the benchmark does.

    python benchmarks/dev/normal_cells_on_fields.py  -> benchmarks/results/dev/normal_cells_on_fields.md
"""

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import match_nuclei  # noqa: E402

from napari_cervseg import segment_field  # noqa: E402
from napari_cervseg.classify import load_model  # noqa: E402
from napari_cervseg.classify.predict import classify  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    fields = DATA / "fields-herlev-dev"
    herlev = DATA / "herlev"
    model = load_model("default")
    threshold = model.card["operating_points"]["screening"]["abnormal_threshold"]
    with open(fields / "cells.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "normal"]
    out = []
    for field in sorted({r["field"] for r in rows}):
        rgb = cv2.cvtColor(cv2.imread(str(fields / "images" / f"{field}.png")), cv2.COLOR_BGR2RGB)
        pages = tifffile.imread(fields / "cells" / f"{field}.tif")
        pages = pages[None] if pages.ndim == 2 else pages
        result = segment_field(rgb, model=model, operating_point="screening")
        pairs = dict(match_nuclei(result.nuclei, pages))
        table = {r["cell_id"]: r for r in result.table}
        for r in rows:
            if r["field"] != field:
                continue
            own = cv2.cvtColor(cv2.imread(str(herlev / "images" / r["herlev_class"] / f"{r['name']}.png")),
                               cv2.COLOR_BGR2RGB)
            p_own = classify(model, own).probabilities["abnormal"]
            k = pairs.get(int(r["page"]))
            p_field = table[k]["p_abnormal"] if k is not None else None
            called = table[k]["predicted_class"] if k is not None else "not found"
            out.append((field, r["name"], r["herlev_class"], p_own, p_field, called))
    lines = ["# Normal cells on the Herlev development fields: own image against field crop (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/normal_cells_on_fields.py`", "",
             f"Default classifier; screening threshold on p(abnormal) {threshold:.3f}; learned finder.", "",
             "| field | cell | Herlev class | p(abnormal), own image | p(abnormal), field crop | called on the field |",
             "|---|---|---|---|---|---|"]
    for field, name, cls, p_own, p_field, called in out:
        pf = "–" if p_field is None else f"{p_field:.3f}"
        lines.append(f"| {field} | {name} | {cls} | {p_own:.3f} | {pf} | {called} |")
    own_abn = sum(p >= threshold for _, _, _, p, _, _ in out)
    found = [o for o in out if o[4] is not None]
    field_abn = sum(o[4] >= threshold for o in found)
    lines += ["", (f"{len(out)} normal cells: {own_abn} over the threshold on their own image; of the {len(found)}"
                   f" found, {field_abn} over it on the field crop (median p {np.median([o[4] for o in found]):.3f}"
                   f" against {np.median([o[3] for o in found]):.3f} on their own images).")]
    print("\n".join(lines))
    write_dev_result("normal_cells_on_fields", lines)


if __name__ == "__main__":
    main()
