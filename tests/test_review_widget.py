"""Review suspicious cells (issue 25, item 4): the widget opens a slide run, moves the multiscale
view to each cell and stores the reviewer's decision in the run's table."""

import pytest
from synthetic import synthetic_slide

napari = pytest.importorskip("napari")

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def slide_run(tmp_path_factory, trained_synthetic_model):
    from napari_cervseg import save_model
    from napari_cervseg.workflows.slides import SlideConfig, segment_slide

    root = tmp_path_factory.mktemp("review")
    model = save_model(trained_synthetic_model, root / "model")
    path, _ = synthetic_slide(root / "slide.ome.tif", shape=(768, 768))
    segment_slide(path, root / "run", SlideConfig(tile=384, margin=128, model=str(model), operating_point=None, finder="classic"),
                  workers=1, scheduler="sync", gallery=4)
    return root / "run"


def test_the_widget_opens_the_run_jumps_to_cells_and_stores_decisions(make_napari_viewer, slide_run):
    from napari_cervseg.plugin.review import ReviewSlideWidget, view_camera
    from napari_cervseg.workflows.slide_outputs import by_suspicion, read_reviews, read_table

    viewer = make_napari_viewer()
    widget = ReviewSlideWidget(viewer)
    widget.suspicious_only.value = False
    widget.open_run(slide_run)
    slide_layers = [layer for layer in viewer.layers if layer.metadata.get("cervseg_slide")]
    assert len(slide_layers) == 1 and slide_layers[0].multiscale
    table = read_table(slide_run)
    assert [r["cell_id"] for r in widget.rows] == [r["cell_id"] for r in by_suspicion(table)]
    assert widget.cell_list.count() == len(table)
    assert not widget.cell_list.item(0).icon().isNull()  # the gallery's thumbnail
    widget.go(2)
    row = widget.rows[2]
    assert tuple(view_camera(viewer).center[-2:]) == pytest.approx((row["y"], row["x"]))
    assert widget.cell_list.currentRow() == 2
    widget.decide("rejected")
    assert widget.index == 3
    assert read_reviews(slide_run)[str(row["cell_id"])]["decision"] == "rejected"
    assert {r["cell_id"]: r["review"] for r in read_table(slide_run)}[row["cell_id"]] == "rejected"
    assert widget.cell_list.item(2).text().startswith("✗")
    widget.next_button.changed.emit(True)
    assert widget.index == 4
    # opened again (another session): the decision is there, and the slide layer is not added twice
    again = ReviewSlideWidget(viewer)
    again.suspicious_only.value = False
    again.open_run(slide_run)
    assert len([layer for layer in viewer.layers if layer.metadata.get("cervseg_slide")]) == 1
    assert next(r for r in again.rows if r["cell_id"] == row["cell_id"])["review"] == "rejected"


def test_a_folder_without_a_run_is_named_in_the_status(make_napari_viewer, tmp_path):
    from napari_cervseg.plugin.review import ReviewSlideWidget

    widget = ReviewSlideWidget(make_napari_viewer())
    widget.open_run(tmp_path)
    assert "no slide run here" in widget.status.value and widget.rows == []


def test_the_nuclei_a_run_left_out_are_shown_on_the_slide(make_napari_viewer, slide_run, tmp_path):
    import json
    import shutil

    from napari_cervseg.plugin.review import ReviewSlideWidget
    from napari_cervseg.workflows.slide_outputs import geojson_features, read_geojson

    run = tmp_path / "run"
    shutil.copytree(slide_run, run)
    path = run / "cells.geojson"
    data = json.loads(path.read_text())
    data["features"] += geojson_features([], [[100.0, 120.0], [400.5, 300.0]])["features"]
    path.write_text(json.dumps(data))
    assert len(read_geojson(path)) == len(json.loads((slide_run / "cells.geojson").read_text())["features"])
    viewer = make_napari_viewer()
    widget = ReviewSlideWidget(viewer)
    widget.open_run(run)
    assert viewer.layers["run left out"].data.tolist() == [[100.0, 120.0], [400.5, 300.0]]
