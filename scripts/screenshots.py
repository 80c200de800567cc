"""The documentation's screenshots of the dock widgets, made in a real napari viewer.

    xvfb-run -a .venv/bin/python scripts/screenshots.py [--only measure refused] [--field PATH]

Writes docs/widget_*.png. The Measure table is shown for a composed Herlev field
(../shared/data/fields-herlev-dev/images/field000.png, or --field) after "Segment all cells".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fields-herlev-dev" / "images" / "field000.png"


def _settle(viewer, qtbot_wait, seconds: float = 1.0):
    import time

    from qtpy.QtWidgets import QApplication

    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _run(widget, timeout: float = 600):
    import time

    from qtpy.QtWidgets import QApplication

    widget.run()
    end = time.time() + timeout
    while time.time() < end and (widget.worker is None or widget.panel.cancel_button.enabled):
        QApplication.processEvents()
        time.sleep(0.05)


def _grab(viewer, path: Path):
    viewer.window._qt_window.resize(1500, 900)
    _settle(viewer, None, 1.0)
    viewer.window._qt_window.grab().save(str(path))
    print("wrote", path)


def measure_table(field: Path):
    import napari

    from napari_cervseg.io.images import read_image, to_rgb_uint8
    from napari_cervseg.plugin.widgets import MeasureCellWidget, SegmentFieldWidget

    viewer = napari.Viewer(show=True)
    image = to_rgb_uint8(read_image(field))[0]
    viewer.add_image(image, name=field.stem, rgb=True)
    seg = SegmentFieldWidget(viewer)
    seg.image_combo.value = field.stem
    _run(seg)
    measure = MeasureCellWidget(viewer)
    viewer.window.add_dock_widget(measure, name="Measure cell (CervSeg)", area="right")
    measure.labels_combo.value = f"{field.stem} cells"
    measure.table.native.selectRow(0)
    measure.go_to_row(0)
    viewer.scene.camera.zoom = 2.0
    _grab(viewer, DOCS / "widget_measure_cell.png")
    viewer.close()


def refused_noncell():
    import napari

    from napari_cervseg.plugin.widgets import SegmentCellWidget

    viewer = napari.Viewer(show=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    viewer.add_image(noise, name="noise 64x64", rgb=True)
    seg = SegmentCellWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment cell (CervSeg)", area="right")
    seg.image_combo.value = "noise 64x64"
    _run(seg)
    _grab(viewer, DOCS / "widget_refused_noncell.png")
    viewer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["measure", "refused"], default=["measure", "refused"])
    parser.add_argument("--field", type=Path, default=FIELD)
    args = parser.parse_args()
    if "measure" in args.only:
        measure_table(args.field)
    if "refused" in args.only:
        refused_noncell()


if __name__ == "__main__":
    main()
