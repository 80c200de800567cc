"""Screenshots of the four dock widgets for the README (docs/widget_*.png).

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/widget_screenshots.py docs

Each widget is docked from the manifest, as a user opens it, and run on the abnormal sample cell
(the batch widget on a three-frame stack made of it).
"""

import sys
import time

import cv2
import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_cervseg.plugin.samples import load_sample

SIZE = (1400, 800)


def settle(seconds: float = 0.4) -> None:
    app = QApplication.instance()
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def run_and_wait(widget, timeout: float = 300) -> None:
    widget.run()
    start = time.time()
    while widget.worker is None or widget.panel.cancel_button.enabled:
        settle(0.05)
        if time.time() - start > timeout:
            raise TimeoutError(f"{type(widget).__name__} did not finish in {timeout} s")
    settle()


def viewer_with(image, name: str):
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(*SIZE)
    viewer.add_image(image, name=name, rgb=True)
    return viewer


def shot(viewer, out: str, name: str) -> None:
    settle()
    viewer.screenshot(f"{out}/{name}.png", canvas_only=False, flash=False)


def main(out: str) -> None:
    cell = load_sample("abnormal")

    viewer = viewer_with(cell, "cell")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cervseg", "Classify & explain")
    widget.image_combo.value = "cell"
    run_and_wait(widget)
    shot(viewer, out, "widget_classify_explain")
    viewer.close()

    viewer = viewer_with(cell, "cell")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cervseg", "Segment cell")
    widget.image_combo.value = "cell"
    run_and_wait(widget)
    shot(viewer, out, "widget_segment_cell")
    viewer.window.remove_dock_widget(dock)
    _, measure = viewer.window.add_plugin_dock_widget("napari-cervseg", "Measure cell")
    measure.labels_combo.value = "cell regions"
    shot(viewer, out, "widget_measure_cell")
    viewer.close()

    small = cv2.resize(cell, (96, 96), interpolation=cv2.INTER_AREA)
    viewer = viewer_with(np.stack([small, small[::-1], small[:, ::-1]]), "stack")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cervseg", "Segment all (batch)")
    run_and_wait(widget)
    shot(viewer, out, "widget_batch_segment")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")
