"""Field outputs and their hand corrections (issue 26): nothing the user made is lost or
overwritten, and whatever does not add up is named in a note rather than measured silently wrong."""

import csv

import cv2
import numpy as np
import pytest
from synthetic import synthetic_field

from napari_cervseg.cli import main
from napari_cervseg.io.images import write_png_atomic


def _rows(out):
    return [r for r in csv.DictReader((out / "descriptors.csv").open()) if r["image"] == "field"]


@pytest.fixture()
def segmented(tmp_path, model_file):
    rgb, pages, _ = synthetic_field()
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "field.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    args = ["segment", str(inputs), "--out", str(out), "--model", model_file, "--field", "yes", "--finder", "classic",
            "--workers", "1", "--quiet"]
    assert main(args) == 0
    return out, args, _rows(out)


def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_a_corrected_cells_file_saved_with_our_mark_survives_a_deleted_labels_file(segmented):
    out, args, first = segmented
    cells = _read(out / "field_cells.png")
    cells[cells == 1] = 0
    write_png_atomic(out / "field_cells.png", cells)  # the plugin's writer marks it as ours
    (out / "field_labels.png").unlink()
    assert main(args) == 0
    assert np.array_equal(_read(out / "field_cells.png"), cells)  # not segmented over
    rows = _rows(out)
    assert len(rows) == len(first) - 1 and all(r["status"] == "kept existing labels" for r in rows)


def test_an_empty_labels_file_loses_nothing(segmented):
    out, args, _ = segmented
    cells = _read(out / "field_cells.png")
    cells[cells == 2] = 0
    write_png_atomic(out / "field_cells.png", cells)
    (out / "field_labels.png").write_bytes(b"")
    for _ in range(2):  # and every later re-run too
        assert main(args) == 0
        assert np.array_equal(_read(out / "field_cells.png"), cells)
        assert (out / "field_nuclei.png").exists() and (out / "field_heatmap.png").exists()


def test_swapped_ids_keep_each_cells_own_class(segmented):
    out, args, first = segmented
    cells, nuclei = _read(out / "field_cells.png"), _read(out / "field_nuclei.png")
    by_id = {int(r["cell_id"]): r for r in first}
    a, b = 1, 2
    for arr in (cells, nuclei):
        one, two = arr == a, arr == b
        arr[one], arr[two] = b, a
    cv2.imwrite(str(out / "field_cells.png"), cells)
    cv2.imwrite(str(out / "field_nuclei.png"), nuclei)
    assert main(args) == 0
    again = {int(r["cell_id"]): r for r in _rows(out)}
    assert again[b]["p_abnormal"] == by_id[a]["p_abnormal"] and again[a]["p_abnormal"] == by_id[b]["p_abnormal"]
    assert again[b]["cell_area"] == by_id[a]["cell_area"]


def test_a_nucleus_that_lost_its_cell_is_named(segmented):
    out, args, _ = segmented
    cells = _read(out / "field_cells.png")
    cells_only = cells.copy()
    one, two = cells == 1, cells == 2
    cells_only[one], cells_only[two] = 2, 1  # ids swapped in _cells.png only
    cv2.imwrite(str(out / "field_cells.png"), cells_only)
    assert main(args) == 0
    rows = {int(r["cell_id"]): r for r in _rows(out)}
    assert "no nucleus with id 1" in rows[1]["warnings"]
    summary = (out / "summary.json").read_text()
    assert "outside the cell of the same id" in summary or "outside the cell of the same id" in str(rows)


def test_deleted_nuclei_and_resized_labels_are_named(segmented):
    out, args, _ = segmented
    (out / "field_nuclei.png").unlink()
    assert main(args) == 0
    assert all("no nucleus" in r["warnings"] for r in _rows(out))
    cells = _read(out / "field_cells.png")
    half = cv2.resize(cells, (cells.shape[1] // 2, cells.shape[0] // 2), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(out / "field_cells.png"), half)
    cv2.imwrite(str(out / "field_nuclei.png"), np.zeros_like(half))
    assert main(args) == 0
    run = csv.DictReader((out / "descriptors.csv").open())
    assert any("resized labels" in (r.get("warnings") or "") for r in run) or "resized" in (
        out / "summary.json").read_text()


def test_a_deleted_cells_file_is_refused_by_name_not_measured_as_one_cell(segmented):
    out, args, _ = segmented
    (out / "field_cells.png").unlink()
    assert main(args) != 0
    assert "field_cells.png is missing" in (out / "summary.json").read_text()
    assert not (out / "field_cells.png").exists()


def test_an_edited_labels_file_is_named(segmented):
    out, args, _ = segmented
    labels = _read(out / "field_labels.png")
    labels[labels == 2] = 1  # every nucleus erased in the 0/1/2 summary
    cv2.imwrite(str(out / "field_labels.png"), labels)
    assert main(args) == 0
    assert "differs from field_cells.png" in (out / "descriptors.csv").read_text()


def test_a_bare_nucleus_gets_no_verdict():
    """Issue 26 item 6: a found cell with no cytoplasm around its nucleus is not judged."""
    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.segment.finder import FoundCell

    rgb, pages, _ = synthetic_field(shape=(220, 300), centres=((110, 150),), size=(120, 130))
    nucleus = pages[0] == 2
    rows, cols = np.nonzero(nucleus)
    box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    cut = (slice(box[0], box[2]), slice(box[1], box[3]))

    class NucleusOnly:
        def find(self, rgb, scale=None):
            return [FoundCell(box, nucleus[cut], nucleus[cut], 1.0)]

    result = segment_field(rgb, model=None, method="colour-baseline", finder=NucleusOnly())
    row = result.table[0]
    assert row["predicted_class"] is None and "bare nucleus" in row["not_judgeable"]
    assert any("stained area" in w for w in result.warnings)  # the cytoplasm lies in no found cell


def _bare_record(called: str):
    from napari_cervseg.measure.records import CellRecord

    p = 0.9 if called == "abnormal" else 0.1
    return CellRecord(cell_id=1, bbox=(0, 0, 40, 40), centroid=(20.0, 20.0), descriptors={"cell_area": 400},
                      predicted_class=called, probability=max(p, 1 - p), p_abnormal=p)


@pytest.mark.parametrize("keeps", [True, False])
def test_a_bare_nucleus_is_never_called_normal(monkeypatch, keeps):
    """Issue 22 (session 12): a bare nucleus called abnormal keeps the call, with a warning that
    its cytoplasm was not found; one called normal gets no verdict (a nucleus alone cannot clear a
    cell). With the switch off, neither gets a verdict (issue 26 item 6)."""
    from types import SimpleNamespace

    from napari_cervseg.workflows import fields

    monkeypatch.setattr(fields, "BARE_NUCLEUS_ABNORMAL_KEEPS_VERDICT", keeps)
    region = np.zeros((40, 40), bool)
    region[5:35, 5:35] = True
    nucleus = region.copy()  # the nucleus fills the cell: no cytoplasm around it
    result = SimpleNamespace(labels=np.where(nucleus, 2, 0).astype(np.uint8))
    found = np.where(nucleus, 1, 0).astype(np.int32)
    for called in ("abnormal", "normal"):
        record = _bare_record(called)
        fields._withhold_if_not_one_cell(record, result, region, nucleus, nucleus, found, 1)
        assert "N/C ratio is not reliable" in record.descriptors["measure_notes"]
        if called == "abnormal" and keeps:
            assert record.predicted_class == "abnormal" and record.judgeable
            assert any("no cytoplasm found around this nucleus" in w for w in record.warnings)
            assert any("N/C ratio is not reliable" in w for w in record.warnings)
        else:
            assert record.predicted_class is None and record.not_judgeable == ["bare nucleus: no cytoplasm found"]
            assert record.p_abnormal == _bare_record(called).p_abnormal  # kept for ordering and review


@pytest.mark.parametrize("point", [None, 0.0])
def test_a_bare_nucleus_with_a_classifier_is_called_abnormal_or_left_without_a_verdict(trained_synthetic_model,
                                                                                       point):
    """The field route end to end: cells found as their nuclei alone (an abnormal and a normal
    synthetic cell) are never called normal, and a call comes with the warning. At threshold 0
    every judgeable crop is called abnormal, so the kept call is reached whatever the network says."""
    from synthetic import synthetic_field

    from napari_cervseg import segment_field
    from napari_cervseg.segment.finder import FoundCell

    rgb, pages, _ = synthetic_field(shape=(220, 480), centres=((110, 120), (110, 360)), size=(120, 130))

    class NucleiOnly:
        def find(self, rgb, scale=None):
            found = []
            for page in pages:
                rows, cols = np.nonzero(page == 2)
                box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
                cut = (page == 2)[box[0]:box[2], box[1]:box[3]]
                found.append(FoundCell(box, cut, cut, 1.0))
            return found

    result = segment_field(rgb, model=trained_synthetic_model, finder=NucleiOnly(), operating_point=point)
    assert result.n_cells == 2
    for row in result.table:
        assert row["predicted_class"] in ("abnormal", None)
        assert "N/C ratio is not reliable" in row["measure_notes"]
        if row["predicted_class"] == "abnormal":
            assert any("no cytoplasm found around this nucleus" in w for w in row["warnings"])
        else:
            assert "bare nucleus" in row["not_judgeable"]
    if point == 0.0:  # the large nucleus's crop is judgeable (the small one is too small to judge)
        assert [row["predicted_class"] for row in result.table].count("abnormal") >= 1
