"""Widgets in a real napari viewer (under Xvfb via pytest-xvfb)."""

import csv

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_cervseg.plugin.layers import WRITTEN_KEY  # noqa: E402
from napari_cervseg.plugin.samples import load_sample  # noqa: E402

pytestmark = pytest.mark.viewer


def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget.worker is not None and not widget.panel.cancel_button.isEnabled(),
                    timeout=timeout)


def _run(widget_cls, viewer, qtbot, image="cell"):
    """Create the widget, choose the image layer, run it and wait for the worker."""
    w = widget_cls(viewer)
    w.image_combo.value = image
    w.run()
    _wait(qtbot, w)
    return w


@pytest.fixture()
def viewer_with_cell(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(load_sample("abnormal"), name="cell", rgb=True)
    return viewer


@pytest.mark.parametrize("key", ["classify_explain", "segment_cell", "batch_segment", "measure_cell"])
def test_each_widget_docks_from_the_manifest(make_napari_viewer, key):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cervseg", {
        "classify_explain": "Classify & explain", "segment_cell": "Segment cell",
        "batch_segment": "Segment all (batch)", "measure_cell": "Measure cell"}[key])
    assert widget is not None and dock is not None


def test_classify_and_explain_adds_a_heatmap(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import ClassifyExplainWidget

    w = _run(ClassifyExplainWidget, viewer_with_cell, qtbot)
    layer = viewer_with_cell.layers["cell heatmap [gradcam++]"]
    assert layer.data.dtype == np.float32 and layer.data.shape == viewer_with_cell.layers["cell"].data.shape[:2]
    assert "p = " in w.result_label.text()


def test_segment_adds_labels_and_rerun_never_overwrites_painting(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = _run(SegmentCellWidget, viewer_with_cell, qtbot)
    labels = viewer_with_cell.layers["cell regions"]
    assert labels.data.dtype == np.uint8 and labels.data.shape == viewer_with_cell.layers["cell"].data.shape[:2]
    assert set(np.unique(labels.data)) <= {0, 1, 2} and (labels.data == 2).any()
    assert "cell heatmap [gradcam++]" in viewer_with_cell.layers
    # an unpainted layer is reused by a re-run
    w.run()
    _wait(qtbot, w)
    assert "cell regions [2]" not in viewer_with_cell.layers
    # the user paints: the next run makes a new layer and leaves the painting alone
    painted = labels.data.copy()
    painted[:4, :4] = 1
    labels.data = painted
    w.run()
    _wait(qtbot, w)
    assert "cell regions [2]" in viewer_with_cell.layers
    np.testing.assert_array_equal(viewer_with_cell.layers["cell regions"].data, painted)


def test_rectangles_segment_each_cell_into_one_full_size_layer(make_napari_viewer, qtbot):
    from napari_cervseg.plugin.widgets import MeasureCellWidget, SegmentCellWidget

    viewer = make_napari_viewer()
    a, b = load_sample("abnormal"), load_sample("normal")
    h = max(a.shape[0], b.shape[0])
    canvas = np.full((h, a.shape[1] + b.shape[1] + 10, 3), 230, np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] + 10:] = b
    viewer.add_image(canvas, name="field", rgb=True)
    rects = [np.array([[0, 0], [a.shape[0], a.shape[1]]]),
             np.array([[0, a.shape[1] + 10], [b.shape[0], canvas.shape[1]]])]
    viewer.add_shapes(rects, shape_type="rectangle", name="cells")
    w = SegmentCellWidget(viewer)
    w.image_combo.value = "field"
    w.rect_combo.value = "cells"
    w.run()
    _wait(qtbot, w, 120000)
    labels = viewer.layers["field regions"]
    assert labels.data.shape == canvas.shape[:2]
    assert (labels.data[:, : a.shape[1]] == 2).any() and (labels.data[:, a.shape[1] + 10:] == 2).any()
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "field regions"
    assert [r["cell"] for r in m.rows] == [1, 2]


def test_segment_widget_calls_abnormal_at_the_screening_point(make_napari_viewer):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = SegmentCellWidget(make_napari_viewer())
    assert "operating_point" not in w.options()
    w.call_combo.value = "screening point"
    assert w.options()["operating_point"] == "screening"
    w.method_combo.value = "colour-baseline"  # no classifier: nothing to call
    assert "operating_point" not in w.options()


def test_painting_updates_the_table_and_csv_matches_it(viewer_with_cell, tmp_path):
    from napari_cervseg.plugin.widgets import MeasureCellWidget

    labels = np.zeros(viewer_with_cell.layers["cell"].data.shape[:2], np.uint8)
    labels[20:80, 20:90] = 1
    labels[40:60, 40:60] = 2
    layer = viewer_with_cell.add_labels(labels, name="cell regions")
    m = MeasureCellWidget(viewer_with_cell)
    m.labels_combo.value = "cell regions"
    col = m.columns().index("nucleus_area")
    assert m.table.item(0, col).text() == "400"
    # paint with napari's own brush API, as a user's stroke does
    layer.selected_label = 2
    layer.brush_size = 5
    layer.paint((50, 70), 2)
    assert int(m.table.item(0, col).text()) > 400
    path = m.export_csv(tmp_path / "d.csv")
    row = next(csv.DictReader(path.open()))
    assert row["nucleus_area"] == m.table.item(0, col).text()
    assert row["cytoplasm_area"] == m.table.item(0, m.columns().index("cytoplasm_area")).text()


def test_pixel_size_from_layer_scale_gives_micrometres(make_napari_viewer):
    from napari_cervseg.plugin.widgets import MeasureCellWidget

    viewer = make_napari_viewer()
    labels = np.zeros((50, 50), np.uint8)
    labels[10:40, 10:40] = 1
    labels[20:30, 20:30] = 2
    viewer.add_labels(labels, name="regions", scale=(0.5, 0.5))
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "regions"
    assert m.rows[0]["nucleus_area_um2"] == pytest.approx(100 * 0.25)
    assert "nucleus_area_um2" in m.columns()


def test_cancel_stops_a_run(viewer_with_cell, qtbot, monkeypatch):
    import threading

    from napari_cervseg.plugin.widgets import SegmentCellWidget
    from napari_cervseg.segment import algorithms as pipeline

    release = threading.Event()
    real_explain = pipeline.explain

    def slow_explain(*args, **kwargs):  # holds the run mid-way until the test has pressed Cancel
        release.wait(30)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(pipeline, "explain", slow_explain)
    w = SegmentCellWidget(viewer_with_cell)
    w.image_combo.value = "cell"
    w.run()
    assert w.panel.cancel_button.isEnabled()
    w.panel.cancel_button.click()
    release.set()
    _wait(qtbot, w)
    assert w.panel.stage.text() == "cancelled"
    assert "cell regions" not in viewer_with_cell.layers


def test_bad_layers_give_a_notification_not_a_traceback(make_napari_viewer, monkeypatch):
    from napari_cervseg import _widgets

    messages = []
    monkeypatch.setattr(_widgets, "_notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((5, 40, 40), np.uint8), name="stack")
    w = _widgets.SegmentCellWidget(viewer)
    w.image_combo.value = "stack"
    w.run()
    assert messages and "stack" in messages[-1] and "(5, 40, 40)" in messages[-1]
    viewer.add_labels(np.zeros((40, 40), np.uint8), name="lab")
    viewer.layers.selection.active = viewer.layers["lab"]
    from napari_cervseg.plugin.menus import segment_active_layer

    monkeypatch.setattr("napari_cervseg.plugin.menus._notify_error", messages.append)
    segment_active_layer(viewer)
    assert "select an image layer" in messages[-1]


def test_menu_command_segments_the_selected_image(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.menus import segment_active_layer

    viewer_with_cell.layers.selection.active = viewer_with_cell.layers["cell"]
    segment_active_layer(viewer_with_cell)
    qtbot.waitUntil(lambda: "cell regions" in viewer_with_cell.layers, timeout=60000)
    assert viewer_with_cell.layers["cell regions"].metadata[WRITTEN_KEY]


def test_viewer_opens_saved_labels_through_the_plugin(make_napari_viewer, tmp_path):
    from napari_cervseg.plugin.writer import write_labels

    labels = np.zeros((30, 40), np.uint8)
    labels[5:25, 5:35] = 1
    labels[10:20, 15:25] = 2
    path = write_labels(str(tmp_path / "cell_labels.png"), labels, {})[0]
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-cervseg")
    assert isinstance(layers[0], napari.layers.Labels)
    np.testing.assert_array_equal(layers[0].data, labels)


@pytest.fixture()
def viewer_with_layers_and_stack(make_napari_viewer):
    import cv2

    viewer = make_napari_viewer()
    cell = load_sample("abnormal")
    viewer.add_image(cell, name="cell", rgb=True)
    small = cv2.resize(cell, (96, 96), interpolation=cv2.INTER_AREA)
    viewer.add_image(np.stack([small, small[::-1], small[:, ::-1]]), name="stack", rgb=True)
    return viewer


def test_batch_action_segments_every_layer_and_every_frame(viewer_with_layers_and_stack, qtbot):
    from napari_cervseg.plugin.widgets import BatchSegmentWidget, MeasureCellWidget

    viewer = viewer_with_layers_and_stack
    w = BatchSegmentWidget(viewer)
    assert w.scope_combo.value == "all image layers"
    w.run()
    _wait(qtbot, w, timeout=120000)
    cell, stack = viewer.layers["cell regions"], viewer.layers["stack regions"]
    assert cell.data.shape == viewer.layers["cell"].data.shape[:2] and (cell.data == 2).any()
    assert stack.data.shape == (3, 96, 96)
    assert all((stack.data[i] == 2).any() for i in range(3))
    # a flipped frame is segmented as the flipped cell, not as a copy of frame 0
    assert not np.array_equal(stack.data[0], stack.data[1])
    assert [r["layer"] for r in w.rows] == ["cell", "stack [frame 0]", "stack [frame 1]", "stack [frame 2]"]
    assert "4 of 4 image(s) segmented into 2 layer(s)" in w.result_label.text()
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "stack regions"
    assert [r["frame"] for r in m.rows] == [0, 1, 2] and m.image_combo.value == "stack"
    assert "frame" in m.columns() and all(r["nucleus_area"] > 0 for r in m.rows)


def test_batch_cancel_keeps_the_frames_that_finished(viewer_with_layers_and_stack, qtbot, monkeypatch):
    import threading

    from napari_cervseg.plugin.widgets import BatchSegmentWidget
    from napari_cervseg.segment import algorithms as pipeline

    viewer = viewer_with_layers_and_stack
    second_started, release = threading.Event(), threading.Event()
    calls = []
    real_explain = pipeline.explain

    def explain_then_hold(*args, **kwargs):  # the second frame waits until the test pressed Cancel
        calls.append(1)
        if len(calls) == 2:
            second_started.set()
            release.wait(30)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(pipeline, "explain", explain_then_hold)
    w = BatchSegmentWidget(viewer)
    w.scope_combo.value = "stack"
    w.run()
    qtbot.waitUntil(second_started.is_set, timeout=60000)
    w.panel.cancel_button.click()
    release.set()
    _wait(qtbot, w)
    stack = viewer.layers["stack regions"].data
    assert (stack[0] == 2).any() and not stack[1:].any()
    assert "1 of 3" in w.result_label.text() and "cancelled" in w.result_label.text()


def test_menu_command_segments_all_layers(viewer_with_layers_and_stack, qtbot):
    from napari_cervseg.plugin.menus import segment_all_layers

    segment_all_layers(viewer_with_layers_and_stack)
    qtbot.waitUntil(lambda: "stack regions" in viewer_with_layers_and_stack.layers, timeout=120000)
    assert "cell regions" in viewer_with_layers_and_stack.layers


@pytest.mark.parametrize("package_first", [False, True], ids=["viewer-first", "package-first"])
def test_explaining_after_the_viewer_is_up_does_not_crash_napari(tmp_path, package_first):
    """In a fresh process, as napari does it: viewer first, then the plugin, then an explanation
    (torchvision -> torch._dynamo -> Triton, whose LLVM crashed a software-OpenGL process). Also
    with the package imported before Qt (a script, a test session), then the widgets."""
    import subprocess
    import sys

    script = (
        ("import napari_cervseg\n" if package_first else "")
        + "import napari\n"
        "viewer = napari.Viewer(show=False)\n"
        "from napari_cervseg import _widgets, explain\n"  # as napari's console / dock widgets do
        "from napari_cervseg.plugin.samples import load_sample\n"
        "for method in ('gradcam++', 'lrp-ruleset1'):\n"
        "    explain('default', load_sample('abnormal'), method=method)\n"
        "viewer.close()\n"
        "print('explained')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "explained" in run.stdout, run.stderr[-2000:]
