"""Widgets in a real napari viewer (under Xvfb via pytest-xvfb)."""

import csv
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_cervseg.plugin.layers import WRITTEN_KEY  # noqa: E402
from napari_cervseg.plugin.samples import load_sample  # noqa: E402

pytestmark = pytest.mark.viewer


def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget.worker is not None and not widget.panel.cancel_button.enabled,
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


@pytest.mark.parametrize("key", ["classify_explain", "segment_cell", "segment_field", "batch_segment", "measure_cell"])
def test_each_widget_docks_from_the_manifest(make_napari_viewer, key):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cervseg", {
        "classify_explain": "Classify & explain", "segment_cell": "Segment cell", "segment_field": "Segment all cells",
        "batch_segment": "Segment all (batch)", "measure_cell": "Measure cell"}[key])
    assert widget is not None and dock is not None


def test_classify_and_explain_adds_a_heatmap(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import ClassifyExplainWidget

    w = _run(ClassifyExplainWidget, viewer_with_cell, qtbot)
    heatmaps = [ly.name for ly in viewer_with_cell.layers if ly.name.startswith("cell heatmap")]
    assert heatmaps == [f"cell heatmap [gradcam++, {w.last_explanation.target_class}]"]
    layer = viewer_with_cell.layers[heatmaps[0]]
    assert layer.data.dtype == np.float32 and layer.data.shape == viewer_with_cell.layers["cell"].data.shape[:2]
    assert "p = " in w.result_label.value


def test_segment_adds_labels_and_rerun_never_overwrites_painting(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = _run(SegmentCellWidget, viewer_with_cell, qtbot)
    labels = viewer_with_cell.layers["cell regions"]
    assert labels.data.dtype == np.uint8 and labels.data.shape == viewer_with_cell.layers["cell"].data.shape[:2]
    assert set(np.unique(labels.data)) <= {0, 1, 2} and (labels.data == 2).any()
    # the default method (self-trained) still shows the cell's explanation, named after it (Grad-CAM++)
    assert w.method_combo.value == "self-trained"
    heatmap = next(ly for ly in viewer_with_cell.layers if ly.name.startswith("cell heatmap [gradcam++, "))
    assert heatmap.data.max() > 0
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
    # the same cells as instances: ids per rectangle, each cell's own class and measurements
    cells = viewer.layers["field cells"].data
    assert set(np.unique(cells)) == {0, 1, 2}
    assert (cells[:, : a.shape[1]] != 2).all() and (cells[:, a.shape[1] + 10:] != 1).all()
    table = {r["cell_id"]: r for r in w.last_field.table}
    for k, result in enumerate(w.last_results, start=1):
        assert table[k]["predicted_class"] == result.predicted_class
        assert table[k]["cell_area"] == int((cells == k).sum())
    m.labels_combo.value = "field cells"
    assert sorted(r["cell_id"] for r in m.rows) == [1, 2] and "predicted_class" in m.columns()


def test_overlapping_rectangles_never_share_a_pixel():
    from synthetic import synthetic_field

    from napari_cervseg.segment.result import SegmentationResult
    from napari_cervseg.workflows.fields import field_from_boxes

    rgb, pages, _ = synthetic_field()
    boxes = [(220, 250, 370, 400), (220, 330, 370, 480)]  # two rectangles that overlap by 70 px
    results = []
    for r0, c0, r1, c1 in boxes:
        labels = np.ones((r1 - r0, c1 - c0), np.uint8)  # each claims its whole box as its cell
        labels[60:90, 60:90] = 2
        results.append(SegmentationResult(labels=labels, rough=labels, heatmap=None, method="gradcam++",
                                          algorithm="cam", predicted_class="normal", probability=0.9,
                                          probabilities={"normal": 0.9, "abnormal": 0.1}))
    field = field_from_boxes(rgb, boxes, results)
    assert field.n_cells == 2
    a, b = field.table
    # the overlap is split at the midpoint between the boxes' centres: no pixel counted twice
    assert a["cell_area"] + b["cell_area"] == (field.cells > 0).sum() < 2 * 150 * 150
    assert a["cell_area"] == pytest.approx(b["cell_area"], rel=0.05)


def test_segment_widget_calls_abnormal_at_the_screening_point(make_napari_viewer):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = SegmentCellWidget(make_napari_viewer())
    assert "operating_point" not in w.options()
    w.call_combo.value = "screening point"
    assert w.options()["operating_point"] == "screening"
    w.method_combo.value = "colour-baseline"  # no classifier: nothing to call
    assert "operating_point" not in w.options()


def test_segment_widget_settings_are_the_dataclass_defaults_and_follow_the_method(make_napari_viewer):
    import dataclasses

    from napari_cervseg.plugin.widgets import SegmentCellWidget
    from napari_cervseg.segment.settings import SEGMENT_METHODS, SETTINGS_CLASSES, algorithm_of

    w = SegmentCellWidget(make_napari_viewer())
    for method in SEGMENT_METHODS:
        w.method_combo.value = method
        cls = SETTINGS_CLASSES[algorithm_of(method)]
        assert w.settings() == cls(), method  # untouched controls hold the method's defaults
        applies = {f.name for f in dataclasses.fields(cls)}
        assert {n for n, c in w.setting_controls.items() if c.enabled} == applies, method
        assert w.options()["settings"] == cls()
    # a value the user set survives a change of method; an untouched one follows the new default
    w.method_combo.value = "gradcam++"
    w.setting_controls["nucleus_iterations"].value = 7
    w.method_combo.value = "lrp-ruleset1"
    assert w.settings().nucleus_iterations == 7 and w.settings().grouping == "kmeans"
    assert w.settings().dilation == SETTINGS_CLASSES["lrp"]().dilation
    w.method_combo.value = "colour-baseline"
    assert w.settings().nucleus_seed == "dark" and w.options()["model"] is None
    assert not w.setting_controls["grouping"].enabled and not w.call_combo.enabled


def test_setting_controls_bounds_are_values_the_settings_accept():
    """The number controls' bounds are the settings' own (``setting_specs``), values the dataclasses accept."""
    from napari_cervseg.plugin.controls import MethodControls
    from napari_cervseg.segment.settings import SETTINGS_CLASSES, SegmentationError, setting_specs

    controls = MethodControls().setting_controls
    numbers = {n: s for n, s in setting_specs().items() if s.type in (int, float) and not s.optional}
    assert numbers and all(spec.bounds is not None for spec in numbers.values())
    for name, spec in numbers.items():
        low, high = controls[name].min, controls[name].max
        assert (low, high) == spec.bounds
        cls = SETTINGS_CLASSES[next(iter(spec.defaults))]
        assert getattr(cls(**{name: low}), name) == low and getattr(cls(**{name: high}), name) == high
        with pytest.raises(SegmentationError):
            cls(**{name: high * 2 + 1})


def test_rectangles_loop_runs_without_a_viewer():
    """The loop behind the rectangles (segment_frames over the boxes) and the paste-back."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import synthetic_cell

    from napari_cervseg.workflows.batch import BatchConfig, paste_boxes, segment_boxes

    cell = synthetic_cell(seed=1)[0]
    h, w = cell.shape[:2]
    field = np.full((h, 2 * w + 10, 3), 255, np.uint8)
    field[:, :w], field[:, w + 10:] = cell, cell[:, ::-1]
    boxes = [(0, 0, h, w), (0, w + 10, h, 2 * w + 10), (0, 0, 1, 1)]  # the last is too small to hold a cell
    seen = []
    out = list(segment_boxes(field, boxes, BatchConfig(model=None, method="colour-baseline"),
                             progress=lambda stage, fraction: seen.append((stage, fraction))))
    assert [name for _, name, _, _ in out] == ["cell 1", "cell 2", "cell 3"]
    assert [box for box, _, _, _ in out] == boxes
    assert seen and seen[0][0].startswith("cell 1 (1/3)") and all(0 <= f <= 1 for _, f in seen)
    results = [r for _, _, r, _ in out]
    labels, heatmap = paste_boxes(field.shape, boxes, results[:2] + [None])
    assert labels.shape == field.shape[:2] and heatmap.dtype == np.float32
    assert (labels[:, :w] == 2).any() and (labels[:, w + 10:] == 2).any() and not labels[:, w:w + 10].any()


def test_frames_loop_runs_without_a_viewer():
    """A stack's frames through the batch loop: a frame that cannot be read fails alone."""
    from napari_cervseg.plugin.layers import layer_frames, read_frames
    from napari_cervseg.workflows.batch import BatchConfig, segment_frames

    stack = np.full((3, 40, 40, 3), 200, np.uint8)
    frames = layer_frames("stack", stack, rgb=True)
    frames[1] = (frames[1][0], lambda: image_from_broken())

    def image_from_broken():
        from napari_cervseg.plugin.layers import LayerError

        raise LayerError("frame 1 is unreadable")

    out = list(segment_frames(read_frames(frames), BatchConfig(model=None, method="colour-baseline"), total=3))
    assert [name for name, _, _ in out] == ["stack [frame 0]", "stack [frame 1]", "stack [frame 2]"]
    assert out[1][1] is None and "unreadable" in out[1][2]["status"]
    assert out[0][1] is not None and out[2][1] is not None


def test_painting_updates_the_table_and_csv_matches_it(viewer_with_cell, tmp_path):
    from napari_cervseg.plugin.widgets import MeasureCellWidget

    labels = np.zeros(viewer_with_cell.layers["cell"].data.shape[:2], np.uint8)
    labels[20:80, 20:90] = 1
    labels[40:60, 40:60] = 2
    layer = viewer_with_cell.add_labels(labels, name="cell regions")
    m = MeasureCellWidget(viewer_with_cell)
    m.labels_combo.value = "cell regions"
    col = m.columns().index("nucleus_area")
    assert m.table.data[0, col] == "400"
    # paint with napari's own brush API, as a user's stroke does
    layer.selected_label = 2
    layer.brush_size = 5
    layer.paint((50, 70), 2)
    assert int(m.table.data[0, col]) > 400
    path = m.export_csv(tmp_path / "d.csv")
    row = next(csv.DictReader(path.open()))
    assert row["nucleus_area"] == m.table.data[0, col]
    assert row["cytoplasm_area"] == m.table.data[0, m.columns().index("cytoplasm_area")]


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
    assert w.panel.cancel_button.enabled
    w.panel.cancel_button.native.click()
    release.set()
    _wait(qtbot, w)
    assert w.panel.stage.value == "cancelled"
    assert "cell regions" not in viewer_with_cell.layers


def test_cancel_during_the_last_step_adds_nothing(viewer_with_cell, qtbot, monkeypatch):
    """Cancel pressed while Classify & explain's one step runs: no heatmap, and it says so."""
    import importlib
    import threading

    from napari_cervseg.plugin.widgets import ClassifyExplainWidget

    explain_module = importlib.import_module("napari_cervseg.explain")  # the package, not its function
    release, started = threading.Event(), threading.Event()
    real_explain = explain_module.explain

    def slow_explain(*args, **kwargs):
        started.set()
        release.wait(30)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(explain_module, "explain", slow_explain)
    w = ClassifyExplainWidget(viewer_with_cell)
    w.image_combo.value = "cell"
    w.run()
    qtbot.waitUntil(started.is_set, timeout=30000)
    w.panel.cancel_button.native.click()
    release.set()
    _wait(qtbot, w)
    assert w.panel.stage.value == "cancelled" and w.cancelled
    assert not any(ly.name.startswith("cell heatmap") for ly in viewer_with_cell.layers)


def test_bad_layers_give_a_notification_not_a_traceback(make_napari_viewer, monkeypatch):
    from napari_cervseg.plugin import widgets as _widgets

    messages = []
    monkeypatch.setattr(_widgets, "_notify_error", messages.append)
    monkeypatch.setattr("napari_cervseg.plugin.work._notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((5, 40, 40), np.uint8), name="stack")
    w = _widgets.SegmentCellWidget(viewer)
    w.image_combo.value = "stack"
    w.run()
    assert messages and "stack" in messages[-1] and "(5, 40, 40)" in messages[-1]
    viewer.add_labels(np.zeros((40, 40), np.uint8), name="lab")
    viewer.layers.selection.active = viewer.layers["lab"]
    from napari.utils._proxies import PublicOnlyProxy

    from napari_cervseg.plugin.menus import segment_active_layer

    monkeypatch.setattr("napari_cervseg.plugin.menus._notify_error", messages.append)
    segment_active_layer(PublicOnlyProxy(viewer))  # what napari hands a menu command
    # the layer type the user selected, not the proxy napari hands to menu commands
    assert "select an image layer" in messages[-1] and "the Labels layer 'lab'" in messages[-1]
    assert "Proxy" not in messages[-1]


def test_a_failed_run_is_a_notification(viewer_with_cell, qtbot, monkeypatch, tmp_path):
    from napari_cervseg.plugin import widgets, work

    messages = []
    monkeypatch.setattr(widgets, "_notify_error", messages.append)
    monkeypatch.setattr(work, "_notify_error", messages.append)
    w = widgets.SegmentCellWidget(viewer_with_cell)
    w.image_combo.value = "cell"
    w.method_controls.model_edit.value = str(tmp_path / "missing.safetensors")
    w.run()
    _wait(qtbot, w)
    assert messages and "missing.safetensors" in messages[-1]
    assert w.panel.stage.value == "failed" and "cell regions" not in viewer_with_cell.layers


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
    assert "4 of 4 image(s) segmented into 2 layer(s)" in w.result_label.value
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "stack regions"
    assert [r["frame"] for r in m.rows] == [0, 1, 2] and m.image_combo.value == "stack"
    assert "frame" in m.columns() and all(r["nucleus_area"] > 0 for r in m.rows)


def test_batch_cancel_keeps_the_frames_that_finished(viewer_with_layers_and_stack, qtbot, monkeypatch):
    from test_widgets_usability import _cancel_during_second_cell, _hold_second_cell

    from napari_cervseg.plugin.widgets import BatchSegmentWidget

    viewer = viewer_with_layers_and_stack
    second_started, release = _hold_second_cell(monkeypatch)  # the second frame waits for Cancel
    w = BatchSegmentWidget(viewer)
    w.scope_combo.value = "stack"
    _cancel_during_second_cell(qtbot, w, second_started, release)
    stack = viewer.layers["stack regions"].data
    assert (stack[0] == 2).any() and not stack[1:].any()
    assert "1 of 3" in w.result_label.value and "cancelled" in w.result_label.value


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
        "from napari_cervseg import explain\n"
        "from napari_cervseg.plugin import widgets\n"  # as napari's console / dock widgets do
        "from napari_cervseg.plugin.samples import load_sample\n"
        "for method in ('gradcam++', 'lrp-ruleset1'):\n"
        "    explain('default', load_sample('abnormal'), method=method)\n"
        "viewer.close()\n"
        "print('explained')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "explained" in run.stdout, run.stderr[-2000:]


def test_segment_all_cells_passes_the_chosen_white_balance(make_napari_viewer, qtbot, model_file):
    """The "slide colour" choice reaches segment_field: asked for, into-range balances even a
    classifier of one's own, and the result text says so."""
    from synthetic import synthetic_field

    from napari_cervseg.plugin.widgets import SegmentFieldWidget

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_field()[0], name="field", rgb=True)
    w = SegmentFieldWidget(viewer)
    w.method_controls.model_edit.value = model_file
    w.image_combo.value = "field"
    w.finder_combo.value = "classic"
    w.white_balance_combo.value = "into-range"
    w.run()
    _wait(qtbot, w, timeout=120000)
    assert w.last_result.white_balance["mode"] == "into-range"
    assert w.last_result.white_balance["gains"] is not None  # (222, 218, 228) is above the range
    assert "cell(s)" in w.panel.result.value and "white-balanced" in w.panel.result.value


def test_segment_all_cells_adds_instance_layers_with_features_and_marks_abnormal(make_napari_viewer, qtbot,
                                                                                model_file):
    from synthetic import synthetic_field

    from napari_cervseg.plugin.widgets import MeasureCellWidget, SegmentFieldWidget

    viewer = make_napari_viewer()
    rgb, pages, _ = synthetic_field()
    viewer.add_image(rgb, name="field", rgb=True)
    w = SegmentFieldWidget(viewer)
    w.method_controls.model_edit.value = model_file
    w.image_combo.value = "field"
    w.run()
    _wait(qtbot, w, timeout=120000)
    result = w.last_result
    assert result is not None and result.n_cells == len(pages)
    cells, nuclei = viewer.layers["field cells"], viewer.layers["field nuclei"]
    assert cells.data.dtype == np.int32 and (cells.data == result.cells).all()
    assert (nuclei.data == result.nuclei).all()
    features = cells.features
    assert list(features["index"]) == [0, *range(1, len(pages) + 1)]
    assert set(features["predicted_class"][1:]) <= {"normal", "abnormal", "no verdict"}
    abnormal = result.abnormal_ids
    if abnormal:
        assert len(viewer.layers["field abnormal cells"].data) == len(abnormal)
    else:
        assert "field abnormal cells" not in viewer.layers
    assert "cell(s)" in w.panel.result.value
    assert f"called by {Path(model_file).stem}" in w.panel.result.value  # the classifier named
    # a classifier of one's own (model_file): "default" judges its crops as they are
    assert w.white_balance_combo.value == "default" and result.white_balance["mode"] == "off"
    assert "white-balanced" not in w.panel.result.value
    # Measure: one row per cell with its class, most suspicious first; follows a correction
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "field cells"
    assert len(m.rows) == len(pages)
    p = [r["p_abnormal"] for r in m.rows]
    assert p == sorted(p, reverse=True)
    assert m.columns()[:3] == ["cell_id", "predicted_class", "p_abnormal"]
    first = m.rows[0]["cell_id"]
    before = next(r["nucleus_area"] for r in m.rows if r["cell_id"] == first)
    data = nuclei.data.copy()
    data[data == first] = 0
    nuclei.data = data  # a correction: the cell loses its nucleus
    assert next(r["nucleus_area"] for r in m.rows if r["cell_id"] == first) == 0 < before
    m.go_to_row(0)
    assert cells.selected_label == m.rows[0]["cell_id"]
    # choosing the nuclei layer measures the same cells (not an error about instance values)
    m.labels_combo.value = "field nuclei"
    assert len(m.rows) == len(pages) and "predicted_class" in m.columns()
    m.labels_combo.value = "field cells"
    # a rerun never overwrites the corrected nuclei layer
    w.run()
    _wait(qtbot, w, timeout=120000)
    assert "field nuclei [2]" in viewer.layers and (viewer.layers["field nuclei"].data == data).all()


def test_segment_cell_runs_the_bundled_ensemble_by_name(viewer_with_cell, qtbot):
    """`ensemble3` typed in the model box: its verdict and heatmap, the labels of the default method."""
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = SegmentCellWidget(viewer_with_cell)
    w.image_combo.value = "cell"
    w.method_controls.model_edit.value = "ensemble3"
    w.run()
    _wait(qtbot, w)
    assert len(w.last_results) == 1
    result = w.last_results[0]
    assert str(result.model).endswith("ensemble3.safetensors")
    assert result.predicted_class == "abnormal" and "cell regions" in viewer_with_cell.layers
    assert any(ly.name.startswith("cell heatmap [gradcam++") for ly in viewer_with_cell.layers)
