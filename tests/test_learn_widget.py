"""The Learn from corrections widget in a real napari viewer (under Xvfb via pytest-xvfb)."""

import hashlib
import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_cervseg.plugin.layers import WRITTEN_KEY, digest  # noqa: E402
from napari_cervseg.segment.student import bundled_segmenters  # noqa: E402

pytestmark = pytest.mark.viewer


def _wait(qtbot, widget, timeout=120000):
    qtbot.waitUntil(lambda: widget.worker is not None and not widget.panel.cancel_button.enabled, timeout=timeout)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def corrected_viewer(make_napari_viewer, synthetic_cells):
    """Cell 'a' with a labels layer as Segment cell makes it, then painted on (the truth); cell
    'b' with a labels layer the user made; cell 'c' with an untouched Segment cell layer."""
    viewer = make_napari_viewer()
    for name, (rgb, truth, _) in zip("abc", synthetic_cells[:3], strict=True):
        viewer.add_image(rgb, name=name, rgb=True)
        if name == "b":
            viewer.add_labels(truth.astype(np.uint8), name="b painted")
            continue
        written = truth.astype(np.uint8).copy()
        left = written[:, : written.shape[1] // 2]
        left[left == 1] = 0  # the segmenter's "error": half the cytoplasm missed
        layer = viewer.add_labels(written, name=f"{name} regions",
                                  metadata={WRITTEN_KEY: digest(written), "cervseg_image": name})
        if name == "a":
            layer.data = truth.astype(np.uint8)  # the user paints the correction
    return viewer


def test_learn_widget_docks_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cervseg", "Learn from corrections")
    assert widget is not None and dock is not None


def test_learns_from_painted_layers_and_offers_the_result(corrected_viewer, qtbot, tmp_path, monkeypatch):
    from napari_cervseg.plugin import learn
    from napari_cervseg.plugin.learn import LearnCorrectionsWidget

    errors = []
    monkeypatch.setattr(learn, "_notify_error", errors.append)
    viewer = corrected_viewer
    bundled = bundled_segmenters()["default"]
    before = _sha(bundled)
    w = LearnCorrectionsWidget(viewer)
    # both Segment cell layers are listed; only the painted one is chosen
    assert set(w.pairs.choices) == {"a regions  <-  a", "c regions  <-  c"}
    assert list(w.pairs.value) == ["a regions  <-  a"]
    w.image_combo.value, w.labels_combo.value = "b", "b painted"
    w.add_pair()
    assert set(w.pairs.value) == {"a regions  <-  a", "b painted  <-  b"}
    out = tmp_path / "mine.safetensors"
    w.out_edit.value = out
    w.steps_spin.value = 2
    w.run()
    _wait(qtbot, w)
    assert out.exists() and out.with_suffix(".json").exists(), w.panel.stage.value
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["corrected_cells"] == 2 and card["supervision"].startswith("the user's own corrected labels")
    assert "learnt from 2 corrected cell(s)" in w.result_label.value and out.name in w.result_label.value
    assert _sha(bundled) == before
    assert str(w.out_edit.value) != str(out)  # the next run is offered a new file
    # use it: the docked Segment cell widget switches to the new segmenter
    _, segment = viewer.window.add_plugin_dock_widget("napari-cervseg", "Segment cell")
    assert w.use_button.enabled and w.use_in_segment_widgets() == [segment]
    assert segment.method_combo.value == "self-trained"
    assert segment.setting_controls["segmenter"].value == str(out.resolve())
    # a second run to an existing file is refused before any work
    written, worker = _sha(out), w.worker
    w.out_edit.value = out
    w.run()
    assert w.worker is worker and "exists and is not overwritten" in errors[-1]
    assert _sha(out) == written


def test_cancel_writes_nothing(corrected_viewer, qtbot, tmp_path):
    from napari_cervseg.plugin.learn import LearnCorrectionsWidget

    w = LearnCorrectionsWidget(corrected_viewer)
    out = tmp_path / "cancelled.safetensors"
    w.out_edit.value = out
    w.steps_spin.value = 2000
    w.run()
    qtbot.waitUntil(lambda: w.panel.bar.value > 0 or "step" in w.panel.stage.value, timeout=60000)
    w.cancel()
    _wait(qtbot, w)
    assert w.cancelled and w.panel.stage.value == "cancelled"
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_nothing_chosen_is_explained(make_napari_viewer, monkeypatch):
    from napari_cervseg.plugin import learn

    errors = []
    monkeypatch.setattr(learn, "_notify_error", errors.append)
    viewer = make_napari_viewer()
    w = learn.LearnCorrectionsWidget(viewer)
    w.run()
    assert w.worker is None and "no corrected cells chosen" in errors[0]


def test_corrected_field_layers_teach_the_cell_finder(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Issue 22: the Learn widget offers a field's cells / nuclei layers; painted ones are chosen
    and fine-tune the cell finder into a new file."""
    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.plugin.learn import LearnCorrectionsWidget
    from napari_cervseg.plugin.widgets import add_field_layers
    from napari_cervseg.segment.finder import load_finder
    from napari_cervseg.workflows import finder_training

    real = finder_training.finetune_finder

    def quick(*args, **kwargs):  # a few steps: the recipe's 120 take minutes on a test machine
        return real(*args, config=finder_training.FinderCorrectionConfig(steps=2, batch_size=2, patches_per_field=4),
                    **kwargs)

    monkeypatch.setattr(finder_training, "finetune_finder", quick)
    viewer = make_napari_viewer()
    rgb, _, _ = synthetic_field()
    image_layer = viewer.add_image(rgb, name="field", rgb=True)
    result = segment_field(rgb, model=None, method="colour-baseline", finder="classic")
    add_field_layers(viewer, image_layer, result)
    w = LearnCorrectionsWidget(viewer)
    assert w.fields.choices and not w.fields.value  # offered, not chosen while untouched
    cells = viewer.layers["field cells"]
    data = cells.data.copy()
    data[data == 1] = 0  # the user erases a false cell
    cells.data = data
    w._refresh()
    assert w.fields.value == list(w.fields.choices)
    out = tmp_path / "lab-finder.safetensors"
    w.finder_out_edit.value = out
    w.run_fields()
    _wait(qtbot, w)
    assert out.exists() and load_finder(out).card["steps"] == 2
    assert "corrected field" in w.panel.result.value
