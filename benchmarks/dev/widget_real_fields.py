"""The fields widget on real and composed fields in a napari viewer (issue 22): each field is
segmented, its layers added as the widget adds them, and Measure opened on them; a field whose
layers fail is named with the error. (Found: a real field's cell outline napari could not
triangulate; outlines are closed paths since.) Run it under a display, e.g.

    xvfb-run -a python benchmarks/dev/widget_real_fields.py
    -> benchmarks/results/dev/widget_real_fields.md
"""

import sys
import traceback
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    import napari

    from napari_cervseg import segment_field
    from napari_cervseg.plugin.widgets import MeasureCellWidget, SegmentFieldWidget

    paths = (sorted((SHARED / "fields-real-unlabelled" / "images").glob("*.png"))
             + sorted((ROOT / "data" / "fields-herlev-val-large" / "images").glob("*.png"))[:4]
             + sorted((SHARED / "fields-isbi-dev" / "images").glob("*.png"))[:4])
    lines = ["# The fields widget on real and composed fields (issue 22)", "",
             f"## code {code_commit()}: `xvfb-run -a python benchmarks/dev/widget_real_fields.py`", "",
             "Default finder and classifier, screening point; layers as the widget adds them, then Measure.", "",
             "| field | cells | layers | result |", "|---|---|---|---|"]
    viewer = napari.Viewer(show=False)
    widget = SegmentFieldWidget(viewer)
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        layer = viewer.add_image(rgb, name=path.stem, rgb=True)
        try:
            result = segment_field(rgb, operating_point="screening")
            widget._show(layer, result)
            MeasureCellWidget(viewer)
            shown = sum(other.name.startswith(f"{path.stem} ") for other in viewer.layers)
            lines.append(f"| {path.stem} | {result.n_cells} | {shown} | ok |")
        except Exception as exc:  # noqa: BLE001 (what this check is for: name the field and the error)
            traceback.print_exc()
            lines.append(f"| {path.stem} | - | - | **{type(exc).__name__}: {exc}** |")
        print(lines[-1], flush=True)
    viewer.close()
    write_dev_result("widget_real_fields", lines)


if __name__ == "__main__":
    main()
