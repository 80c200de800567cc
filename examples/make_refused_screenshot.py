"""Screenshot of the Segment cell widget refusing a verdict on random noise (docs/widget_refused_noncell.png).

    xvfb-run -a python examples/make_refused_screenshot.py     # headless
"""

import napari
import numpy as np
from make_widget_screenshots import shot, wait_for

from napari_cervseg.plugin.widgets import SegmentCellWidget


def main():
    viewer = napari.Viewer(title="napari-cervseg")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    viewer.add_image(noise, name="random noise 64 x 64", rgb=True)
    widget = SegmentCellWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment cell", area="right")
    widget.image_combo.value = "random noise 64 x 64"
    widget.run()
    wait_for(widget)
    for name in [layer.name for layer in viewer.layers if "heatmap" in layer.name]:
        viewer.layers[name].visible = False
    shot(viewer, "widget_refused_noncell.png")
    print(widget.result_label.value)
    viewer.close()


if __name__ == "__main__":
    main()
