"""What a new user hit in the viewer (issue 16): each test fails without its fix."""

import re
import threading
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_cervseg.plugin.samples import load_sample  # noqa: E402

pytestmark = pytest.mark.viewer
README = Path(__file__).resolve().parents[1] / "README.md"


def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget.worker is not None and not widget.panel.cancel_button.enabled,
                    timeout=timeout)


@pytest.fixture()
def viewer_with_cell(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(load_sample("abnormal"), name="cell", rgb=True)
    return viewer


def test_conversion_warnings_reach_the_result_text_and_a_notification(make_napari_viewer, qtbot, monkeypatch):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    viewer = make_napari_viewer()
    grey = load_sample("abnormal").mean(axis=2)
    viewer.add_image((10600 + grey / 255 * 30600).astype(np.uint16), name="grey16")
    w = SegmentCellWidget(viewer)
    w.image_combo.value = "grey16"
    w.run()
    _wait(qtbot, w)
    assert "uint16" in w.result_label.value and "stretched" in w.result_label.value
    assert any("uint16" in m for m in shown)


def test_a_renamed_layer_stays_chosen_under_its_new_name(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import MeasureCellWidget, SegmentCellWidget

    w = SegmentCellWidget(viewer_with_cell)
    assert w.image_combo.value == "cell"
    viewer_with_cell.layers["cell"].name = "patient 7"
    assert "patient 7" in w.image_combo.choices and "cell" not in w.image_combo.choices
    assert w.image_combo.value == "patient 7"
    w.run()
    _wait(qtbot, w)
    assert "patient 7 regions" in viewer_with_cell.layers
    m = MeasureCellWidget(viewer_with_cell)
    m.labels_combo.value = "patient 7 regions"
    viewer_with_cell.layers["patient 7 regions"].name = "checked"
    assert m.labels_combo.value == "checked" and m.rows


def test_the_plugins_heatmaps_are_marked_and_never_taken_for_images(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.layers import KIND_KEY
    from napari_cervseg.plugin.widgets import BatchSegmentWidget, SegmentCellWidget

    w = SegmentCellWidget(viewer_with_cell)
    w.run()
    _wait(qtbot, w)
    heatmaps = [ly for ly in viewer_with_cell.layers if ly.metadata.get(KIND_KEY) == "heatmap"]
    assert len(heatmaps) == 1 and heatmaps[0].name.startswith("cell heatmap")
    assert w.image_combo.choices == ("cell",)
    batch = BatchSegmentWidget(viewer_with_cell)
    assert [layer.name for layer, _ in batch.targets()] == ["cell"]
    assert heatmaps[0].name not in batch.scope_combo.choices


def test_heatmap_names_say_which_class_and_which_explanation(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import ClassifyExplainWidget, SegmentCellWidget

    w = ClassifyExplainWidget(viewer_with_cell)
    for target in ("normal", "abnormal"):
        w.target_combo.value = target
        w.run()
        _wait(qtbot, w)
    names = {ly.name for ly in viewer_with_cell.layers}
    assert {"cell heatmap [gradcam++, normal]", "cell heatmap [gradcam++, abnormal]"} <= names
    s = SegmentCellWidget(viewer_with_cell)
    s.method_combo.value = "self-trained"
    s.run()
    _wait(qtbot, s)
    assert not any("[self-trained" in ly.name for ly in viewer_with_cell.layers)  # its heatmap is Grad-CAM++'s


def test_a_refused_input_clears_the_previous_result(viewer_with_cell, qtbot, monkeypatch):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    monkeypatch.setattr("napari_cervseg.plugin.work._notify_error", lambda message: None)
    w = SegmentCellWidget(viewer_with_cell)
    w.run()
    _wait(qtbot, w)
    assert "labels in 'cell regions'" in w.result_label.value
    viewer_with_cell.add_image(np.zeros((5, 40, 40), np.uint8), name="stack")
    w.image_combo.value = "stack"
    w.run()
    assert w.result_label.value == "" and w.panel.stage.value.startswith("not run: ")
    assert "(5, 40, 40)" in w.panel.stage.value


def _hold_second_cell(monkeypatch):
    """Explanations run at once except the second, which waits until released."""
    from napari_cervseg.segment import algorithms

    second_started, release, calls = threading.Event(), threading.Event(), []
    real_explain = algorithms.explain

    def explain_then_hold(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            second_started.set()
            release.wait(30)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(algorithms, "explain", explain_then_hold)
    return second_started, release


def _cancel_during_second_cell(qtbot, w, second_started, release):
    """Run ``w``; press Cancel once the second cell's explanation has started, let that one finish,
    and wait for the worker to end."""
    w.run()
    qtbot.waitUntil(second_started.is_set, timeout=60000)
    w.panel.cancel_button.native.click()
    release.set()
    _wait(qtbot, w)


def test_cancelling_rectangles_keeps_the_cells_already_done(make_napari_viewer, qtbot, monkeypatch):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    viewer = make_napari_viewer()
    a = load_sample("abnormal")
    canvas = np.full((a.shape[0], 2 * a.shape[1] + 10, 3), 230, np.uint8)
    canvas[:, : a.shape[1]] = a
    canvas[:, a.shape[1] + 10:] = a[:, ::-1]
    viewer.add_image(canvas, name="field", rgb=True)
    viewer.add_shapes([np.array([[0, 0], [a.shape[0], a.shape[1]]]),
                       np.array([[0, a.shape[1] + 10], [a.shape[0], canvas.shape[1]]])],
                      shape_type="rectangle", name="cells")
    second_started, release = _hold_second_cell(monkeypatch)
    w = SegmentCellWidget(viewer)
    w.image_combo.value, w.rect_combo.value = "field", "cells"
    _cancel_during_second_cell(qtbot, w, second_started, release)
    labels = viewer.layers["field regions"].data
    assert (labels[:, : a.shape[1]] == 2).any() and not labels[:, a.shape[1]:].any()
    assert "cancelled: 1 of 2 cell(s) done" in w.result_label.value
    assert w.panel.stage.value == "cancelled" and w.panel.bar.value == 0
    assert sorted(np.unique(viewer.layers["field cells"].data)) == [0, 1]


def test_batch_cancel_leaves_no_stale_stage(make_napari_viewer, qtbot, monkeypatch):
    import cv2

    from napari_cervseg.plugin.widgets import BatchSegmentWidget

    viewer = make_napari_viewer()
    small = cv2.resize(load_sample("abnormal"), (96, 96), interpolation=cv2.INTER_AREA)
    viewer.add_image(np.stack([small, small[::-1], small[:, ::-1]]), name="stack", rgb=True)
    second_started, release = _hold_second_cell(monkeypatch)
    w = BatchSegmentWidget(viewer)
    w.run()
    qtbot.waitUntil(second_started.is_set, timeout=60000)
    w.panel.cancel_button.native.click()
    assert w.panel.stage.value == "cancelling..."
    release.set()
    _wait(qtbot, w)
    assert w.panel.stage.value == "cancelled" and w.panel.bar.value == 0


def test_measure_follows_console_edits_has_recompute_units_and_goes_to_a_row(make_napari_viewer):
    from napari_cervseg.plugin.widgets import TABLE_MIN_HEIGHT, MeasureCellWidget

    viewer = make_napari_viewer()
    labels = np.zeros((200, 300), np.uint8)
    labels[20:80, 20:90] = 1
    labels[40:60, 40:60] = 2
    layer = viewer.add_labels(labels, name="regions",
                              metadata={"cervseg_boxes": [(0, 0, 100, 100), (100, 150, 200, 300)]})
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "regions"
    col = m.columns().index("nucleus_area")
    assert m.table.data[0, col] == "400"
    layer.data[40:60, 60:70] = 2  # from the console: no paint event, only the refresh
    layer.refresh()
    assert m.table.data[0, col] == "600"
    layer.data[45:50, 45:50] = 1
    m.recompute_button.native.click()
    assert m.table.data[0, col] == "575"
    headers = [m.table.native.horizontalHeaderItem(i).text() for i in range(m.table.native.columnCount())]
    assert "nucleus area\n(px²)" in headers and "N/C ratio" in headers
    assert m.table.native.minimumHeight() >= TABLE_MIN_HEIGHT
    m.go_to_row(1)
    assert np.allclose(viewer.scene.camera.center[-2:], (150, 225))


def test_hovering_the_regions_shows_region_names(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = SegmentCellWidget(viewer_with_cell)
    w.run()
    _wait(qtbot, w)
    layer = viewer_with_cell.layers["cell regions"]
    r, c = np.argwhere(layer.data == 2)[0]
    assert "nucleus" in str(layer.get_status((r, c), world=True))


def test_the_readme_console_snippet_runs_on_the_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cervseg", "abnormal_cell")
    text = README.read_text()
    start = text.index("In napari's console")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
    namespace = {"viewer": viewer}
    exec(compile(code, "README console snippet", "exec"), namespace)  # noqa: S102
    result, image_layer = namespace["result"], namespace["image_layer"]
    regions = viewer.layers[f"{image_layer.name} regions"]
    assert result.predicted_class in ("normal", "abnormal") and (regions.data == 2).any()
    from napari_cervseg.segment.result import LABEL_COLOURS

    assert np.allclose(regions.colormap.map(2)[..., :3], np.asarray(LABEL_COLOURS[2]) / 255, atol=0.01)


def test_the_first_stage_is_loading_the_model(viewer_with_cell, qtbot):
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = SegmentCellWidget(viewer_with_cell)
    stages, report = [], w.panel.report
    w.panel.report = lambda progress: (stages.append(progress.stage), report(progress))
    w.run()
    _wait(qtbot, w)
    assert stages[0] == "loading model" and stages[-1] == "done"


def test_menu_refuses_a_heatmap_and_names_it(viewer_with_cell, qtbot, monkeypatch):
    from napari.utils._proxies import PublicOnlyProxy

    from napari_cervseg.plugin.menus import segment_active_layer
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    w = SegmentCellWidget(viewer_with_cell)
    w.run()
    _wait(qtbot, w)
    messages = []
    monkeypatch.setattr("napari_cervseg.plugin.menus._notify_error", messages.append)
    heatmap = next(ly for ly in viewer_with_cell.layers if ly.name.startswith("cell heatmap"))
    viewer_with_cell.layers.selection.active = heatmap
    segment_active_layer(PublicOnlyProxy(viewer_with_cell))
    assert messages and "heatmap" in messages[-1]


def test_cancelling_a_field_keeps_the_cells_already_done(make_napari_viewer, qtbot, monkeypatch, model_file):
    """Issue 23 item 1: Cancel during "cell 2 of N" shows the finished cells, not nothing."""
    from synthetic import synthetic_field

    from napari_cervseg.plugin.widgets import SegmentFieldWidget

    viewer = make_napari_viewer()
    rgb, pages, _ = synthetic_field()
    viewer.add_image(rgb, name="field", rgb=True)
    w = SegmentFieldWidget(viewer)
    w.method_controls.model_edit.value = model_file
    w.finder_combo.value = "classic"
    w.image_combo.value = "field"
    second_started, release = _hold_second_cell(monkeypatch)
    _cancel_during_second_cell(qtbot, w, second_started, release)
    result = w.last_result
    assert result is not None and 1 <= result.n_cells < len(pages)
    assert "field cells" in viewer.layers and viewer.layers["field cells"].data.max() == result.n_cells
    assert "cancelled" in w.panel.stage.value and "cell(s)" in w.panel.result.value


def test_the_image_choice_follows_a_newly_opened_or_selected_image(make_napari_viewer):
    """Issue 23 item 5: Segment cell works on the image just opened (or selected), not the old one."""
    from napari_cervseg.plugin.widgets import SegmentCellWidget, SegmentFieldWidget

    viewer = make_napari_viewer()
    viewer.add_image(load_sample("abnormal"), name="first", rgb=True)
    cell, field = SegmentCellWidget(viewer), SegmentFieldWidget(viewer)
    viewer.add_image(load_sample("normal"), name="second", rgb=True)
    assert cell.image_combo.value == "second" and field.image_combo.value == "second"
    viewer.layers.selection.active = viewer.layers["first"]
    assert cell.image_combo.value == "first"
    viewer.add_labels(np.zeros((10, 10), np.int32), name="some labels")  # not an image: no change
    assert cell.image_combo.value == "first"


def test_a_menu_command_twice_reuses_its_dock(make_napari_viewer, qtbot):
    """Issue 23 item 4: Layers > Segment > Measure (and the others) reuse an open dock."""
    from napari_cervseg.plugin.menus import measure_active_layer
    from napari_cervseg.plugin.widgets import MeasureCellWidget

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((20, 20), np.uint8), name="labels")
    measure_active_layer(viewer)
    measure_active_layer(viewer)
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, MeasureCellWidget)]
    assert len(docked) == 1


def test_segment_cell_on_a_field_withholds_its_verdict_and_offers_segment_all_cells(make_napari_viewer, qtbot,
                                                                                     monkeypatch, model_file):
    """Issue 23 item 6: no "normal (p = 0.89)" headline for an image of several cells; a napari
    warning and one click to Segment all cells instead."""
    from synthetic import synthetic_field

    from napari_cervseg.plugin.widgets import SegmentCellWidget, SegmentFieldWidget

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    viewer = make_napari_viewer()
    rgb, pages, _ = synthetic_field(shape=(520, 560))
    viewer.add_image(rgb, name="field", rgb=True)
    w = SegmentCellWidget(viewer)
    w.method_controls.model_edit.value = model_file
    w.image_combo.value = "field"
    w.run()
    _wait(qtbot, w)
    text = w.result_label.value
    assert "no single verdict" in text and "normal (p" not in text and "abnormal (p" not in text
    assert any("Segment all cells" in m for m in shown)
    assert not w.field_button.native.isHidden()
    field_widget = w.segment_all_cells()
    assert isinstance(field_widget, SegmentFieldWidget) and field_widget.image_combo.value == "field"
    _wait(qtbot, field_widget, timeout=120000)
    assert "field cells" in viewer.layers


def test_measure_docked_before_a_field_run_shows_no_errors(make_napari_viewer, qtbot, monkeypatch, model_file):
    """Issue 23 item 2: Measure open while Segment all cells adds its layers: no "labels must use
    0, 1, 2" errors, and the cells are measured once both layers are there."""
    from synthetic import synthetic_field

    from napari_cervseg.plugin.widgets import MeasureCellWidget, SegmentFieldWidget

    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    rgb, pages, _ = synthetic_field()
    viewer.add_image(rgb, name="field", rgb=True)
    m = MeasureCellWidget(viewer)
    w = SegmentFieldWidget(viewer)
    w.method_controls.model_edit.value = model_file
    w.finder_combo.value = "classic"
    w.image_combo.value = "field"
    w.run()
    _wait(qtbot, w, timeout=120000)
    assert not errors, errors
    m.labels_combo.value = "field nuclei"
    assert len(m.rows) == w.last_result.n_cells
    m.labels_combo.value = "field cells"
    assert len(m.rows) == w.last_result.n_cells


def test_a_field_edit_updates_hover_boxes_and_outlines(make_napari_viewer):
    """Issue 23 item 3: erase a cell and its box and outline go; paint a nucleus and hover shows
    its new area (one source of truth: the layers' data)."""
    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.plugin.widgets import add_field_layers

    viewer = make_napari_viewer()
    rgb, _, _ = synthetic_field()
    image = viewer.add_image(rgb, name="field", rgb=True)
    result = segment_field(rgb, model=None, method="colour-baseline", finder="classic")
    for record in result.records:  # every cell called abnormal, so that each has a box
        record.predicted_class, record.p_abnormal = "abnormal", 0.9
    add_field_layers(viewer, image, result)
    cells, nuclei = viewer.layers["field cells"], viewer.layers["field nuclei"]
    n = result.n_cells
    assert len(viewer.layers["field abnormal cells"].data) == n
    assert len(viewer.layers["field cell outlines"].data) == n
    area = int(cells.features["nucleus_area"][2])
    assert isinstance(cells.features["nucleus_area"][2], (int, np.integer))
    data = cells.data.copy()
    data[data == 1] = 0  # erase cell 1
    cells.data = data
    assert len(viewer.layers["field abnormal cells"].data) == n - 1
    assert len(viewer.layers["field cell outlines"].data) == n - 1
    assert 1 not in list(cells.features["index"])
    more = nuclei.data.copy()
    grow = np.zeros_like(more, bool)
    rows, cols = np.nonzero(more == 2)
    grow[rows.min():rows.max() + 3, cols.min():cols.max() + 3] = True
    more[grow & (cells.data == 2)] = 2  # paint cell 2's nucleus larger
    nuclei.data = more
    index = list(cells.features["index"]).index(2)
    assert int(cells.features["nucleus_area"][index]) == int(((more == 2) & (cells.data == 2)).sum()) > area


def test_settings_that_do_not_apply_are_hidden_and_learn_sees_console_edits(make_napari_viewer):
    """Issue 23 item 8: the default method shows its own settings only; the Learn widget picks up
    an edit made from napari's console (data[...] = ...; refresh())."""
    from napari_cervseg.plugin.layers import WRITTEN_KEY, digest
    from napari_cervseg.plugin.learn import LearnCorrectionsWidget
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    viewer = make_napari_viewer()
    viewer.add_image(load_sample("abnormal"), name="cell", rgb=True)
    w = SegmentCellWidget(viewer)
    viewer.window.add_dock_widget(w)
    hidden = [n for n, c in w.setting_controls.items() if not c.enabled]
    assert hidden and all(w.setting_controls[n].native.isHidden() for n in hidden)
    assert all(not c.native.isHidden() for c in w.setting_controls.values() if c.enabled)
    w.method_combo.value = "lrp-ruleset1"
    assert all(not c.native.isHidden() for c in w.setting_controls.values() if c.enabled)
    labels = np.zeros(load_sample("abnormal").shape[:2], np.uint8)
    labels[10:40, 10:40] = 1
    labels[20:30, 20:30] = 2
    layer = viewer.add_labels(labels.copy(), name="cell regions",
                              metadata={WRITTEN_KEY: digest(labels), "cervseg_image": "cell"})
    learn = LearnCorrectionsWidget(viewer)
    assert not learn.pairs.value
    layer.data[20:30, 20:35] = 2  # from the console
    layer.refresh()
    assert learn.pairs.value == ["cell regions  <-  cell"]


def test_opening_a_widget_warms_the_models_up_in_the_background(make_napari_viewer, monkeypatch):
    """Issue 23 item 7: the first widget loads the default model and segmenter in a daemon thread,
    so the first click does not pay for it (benchmarks/results/first_click.md)."""
    import threading

    from napari_cervseg.classify import models
    from napari_cervseg.plugin import work
    from napari_cervseg.plugin.widgets import SegmentCellWidget

    monkeypatch.setenv("CERVSEG_NO_WARMUP", "0")
    monkeypatch.setitem(work._warmed, "started", False)
    models._load_cached.cache_clear()
    viewer = make_napari_viewer()
    SegmentCellWidget(viewer)
    threads = [t for t in threading.enumerate() if t.name == "cervseg-warm-up"]
    assert threads
    threads[0].join(120)
    assert not threads[0].is_alive() and models._load_cached.cache_info().currsize >= 1
    SegmentCellWidget(viewer)  # once per session
    assert not [t for t in threading.enumerate() if t.name == "cervseg-warm-up" and t is not threads[0]]


def test_a_field_cell_without_a_verdict_says_so_on_hover_and_in_measure(make_napari_viewer):
    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.plugin.widgets import MeasureCellWidget, add_field_layers

    viewer = make_napari_viewer()
    rgb, _, _ = synthetic_field()
    image = viewer.add_image(rgb, name="field", rgb=True)
    result = segment_field(rgb, model=None, method="colour-baseline", finder="classic")
    result.records[0].withhold("unlike_training_cells")
    result.records[0].p_abnormal = None
    add_field_layers(viewer, image, result)
    cells = viewer.layers["field cells"]
    index = list(cells.features["index"]).index(result.table[0]["cell_id"])
    assert cells.features["predicted_class"][index] == "no verdict"
    m = MeasureCellWidget(viewer)
    m.labels_combo.value = "field cells"
    row = next(r for r in m.rows if r["cell_id"] == result.table[0]["cell_id"])
    assert row["predicted_class"] == "no verdict"


def test_nuclei_left_out_are_shown_as_points_and_go_when_none_are_left_out(make_napari_viewer):
    """What the finder's second look left out (unconfirmed, looked normal) is shown, not hidden."""
    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.plugin.widgets import add_field_layers

    viewer = make_napari_viewer()
    rgb, _, _ = synthetic_field()
    image = viewer.add_image(rgb, name="field", rgb=True, scale=(2.0, 2.0))
    result = segment_field(rgb, model=None, method="colour-baseline", finder="classic")
    result.left_out = [(50.0, 60.0), (200.5, 300.0)]
    names = add_field_layers(viewer, image, result)
    points = viewer.layers["field left out"]
    assert names["left_out"] == "field left out"
    np.testing.assert_allclose(points.data, [[50.0, 60.0], [200.5, 300.0]])
    np.testing.assert_allclose(points.scale, (2.0, 2.0))  # on the image, wherever it lies
    result.left_out = []
    names = add_field_layers(viewer, image, result)
    assert "field left out" not in viewer.layers and "left_out" not in names


def test_a_real_cells_outline_that_napari_cannot_triangulate_is_still_shown(make_napari_viewer):
    """A cell outline from the real field edf002 made napari's polygon triangulation fail and the
    field's layers were never shown; outlines are closed paths (nothing to triangulate)."""
    from pathlib import Path

    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.plugin.widgets import add_field_layers

    ring = np.load(Path(__file__).parent / "data" / "real_cell_outline_edf002.npy").astype(float)
    viewer = make_napari_viewer()
    rgb, _, _ = synthetic_field(shape=(700, 1100))
    image = viewer.add_image(rgb, name="field", rgb=True)
    result = segment_field(rgb, model=None, method="colour-baseline", finder="classic")
    first = result.records[0].cell_id
    result.outlines = lambda: {first: ring}
    add_field_layers(viewer, image, result)
    outline = viewer.layers["field cell outlines"].data[0]
    np.testing.assert_allclose(outline[:-1], ring)
    np.testing.assert_allclose(outline[-1], ring[0])  # closed
