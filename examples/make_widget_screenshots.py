"""Screenshots of each dock widget after a real run, for the README (docs/widget_*.png).

    xvfb-run -a python examples/make_widget_screenshots.py     # headless
    python examples/make_widget_screenshots.py                 # with a display

The Measure table of a field (docs/widget_measure_field.png) is of a composed Herlev field,
../shared/data/fields-herlev-dev/images/field000.png (skipped when the data is not there).
"""

import time
from pathlib import Path

import cv2
import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_cervseg.io.images import read_image, to_rgb_uint8
from napari_cervseg.plugin.samples import SAMPLES, load_sample
from napari_cervseg.plugin.widgets import (
    BatchSegmentWidget,
    ClassifyExplainWidget,
    MeasureCellWidget,
    SegmentCellWidget,
    SegmentFieldWidget,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fields-herlev-dev" / "images" / "field000.png"


def wait_for(widget, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        QApplication.processEvents()
        if widget.worker is not None and not widget.panel.cancel_button.enabled:
            break
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def shot(viewer, name):
    viewer.window._qt_window.resize(1400, 960)
    for _ in range(10):
        QApplication.processEvents()
        time.sleep(0.05)
    path = DOCS / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def main():
    DOCS.mkdir(exist_ok=True)
    viewer = napari.Viewer(title="napari-cervseg")
    viewer.add_image(load_sample("abnormal"), name="cell", rgb=True)

    explain_w = ClassifyExplainWidget(viewer)
    dock = viewer.window.add_dock_widget(explain_w, name="Classify & explain", area="right")
    explain_w.image_combo.value = "cell"
    explain_w.run()
    wait_for(explain_w)
    shot(viewer, "widget_classify_explain.png")
    viewer.window.remove_dock_widget(dock)

    seg_w = SegmentCellWidget(viewer)
    dock = viewer.window.add_dock_widget(seg_w, name="Segment cell", area="right")
    seg_w.image_combo.value = "cell"
    seg_w.run()
    wait_for(seg_w)
    for layer in viewer.layers:
        if layer.name.startswith("cell heatmap"):
            layer.visible = False
    shot(viewer, "widget_segment_cell.png")
    viewer.window.remove_dock_widget(dock)

    measure_w = MeasureCellWidget(viewer)
    viewer.window.add_dock_widget(measure_w, name="Measure cell", area="right")
    measure_w.labels_combo.value = "cell regions"
    measure_w.pixel_size.value = 0.25
    # a hand correction, painted with the labels layer's own brush
    layer = viewer.layers["cell regions"]
    layer.selected_label = 2
    layer.brush_size = 6
    nucleus = np.argwhere(layer.data == 2)
    if len(nucleus):
        layer.paint(tuple(nucleus.mean(0).astype(int)), 2)
    shot(viewer, "widget_measure_cell.png")
    viewer.close()

    # the batch action on a stack: the four sample cells as frames of one layer
    viewer = napari.Viewer(title="napari-cervseg")
    frames = np.stack([cv2.resize(load_sample(k), (128, 128), interpolation=cv2.INTER_AREA) for k in SAMPLES])
    viewer.add_image(frames, name="cells", rgb=True)
    batch_w = BatchSegmentWidget(viewer)
    viewer.window.add_dock_widget(batch_w, name="Segment all (batch)", area="right")
    batch_w.run()
    wait_for(batch_w)
    viewer.dims.set_current_step(0, 1)
    shot(viewer, "widget_batch_segment.png")
    viewer.close()

    if FIELD.exists():  # the Measure table of a field: one row per cell, most suspicious first
        viewer = napari.Viewer(title="napari-cervseg")
        viewer.add_image(to_rgb_uint8(read_image(FIELD))[0], name=FIELD.stem, rgb=True)
        field_w = SegmentFieldWidget(viewer)
        field_w.image_combo.value = FIELD.stem
        field_w.run()
        wait_for(field_w, timeout=600)
        measure_w = MeasureCellWidget(viewer)
        viewer.window.add_dock_widget(measure_w, name="Measure cell", area="right")
        measure_w.labels_combo.value = f"{FIELD.stem} cells"
        measure_w.table.native.selectRow(0)
        measure_w.go_to_row(0)  # what clicking the first row does
        viewer.scene.camera.zoom = 2.0
        shot(viewer, "widget_measure_field.png")
        viewer.close()

    # an input that is no cell: the verdict is refused, with the reason
    viewer = napari.Viewer(title="napari-cervseg")
    viewer.add_image(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), name="noise", rgb=True)
    seg_w = SegmentCellWidget(viewer)
    viewer.window.add_dock_widget(seg_w, name="Segment cell", area="right")
    seg_w.image_combo.value = "noise"
    seg_w.run()
    wait_for(seg_w)
    shot(viewer, "widget_refused_noncell.png")
    viewer.close()


if __name__ == "__main__":
    main()
