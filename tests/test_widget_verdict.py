"""The widgets say "no verdict" on what is not a cell (issue 16, item 1), in a real napari viewer."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

pytestmark = pytest.mark.viewer


@pytest.mark.parametrize("widget_name", ["SegmentCellWidget", "ClassifyExplainWidget"])
def test_random_noise_gets_no_class_and_the_reason_in_the_widget(make_napari_viewer, qtbot, widget_name):
    from napari_cervseg.plugin import widgets

    viewer = make_napari_viewer()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    viewer.add_image(noise, name="noise", rgb=True)
    w = getattr(widgets, widget_name)(viewer)
    w.image_combo.value = "noise"
    w.run()
    qtbot.waitUntil(lambda: w.worker is not None and not w.panel.cancel_button.enabled, timeout=120000)
    text = w.result_label.value
    first = text.splitlines()[0]
    assert first.startswith("no verdict: unlike any training cell"), text
    assert "abnormal (p =" not in text and "normal (p =" not in text
