"""`cervseg segment --field`: instance labels, one descriptors row per cell, corrections kept."""

import csv
import json

import cv2
import numpy as np
from synthetic import synthetic_cell, synthetic_field

from napari_cervseg.cli import main


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_field_writes_instance_labels_and_one_row_per_cell(tmp_path, model_file):
    rgb, pages, _ = synthetic_field()
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write(inputs / "field.png", rgb)
    _write(inputs / "cell.png", synthetic_cell((120, 130), seed=2)[0])
    out = tmp_path / "out"
    assert main(["segment", str(inputs), "--out", str(out), "--model", model_file, "--field", "auto",
                 "--workers", "1", "--quiet"]) == 0
    cells = cv2.imread(str(out / "field_cells.png"), cv2.IMREAD_UNCHANGED)
    nuclei = cv2.imread(str(out / "field_nuclei.png"), cv2.IMREAD_UNCHANGED)
    labels = cv2.imread(str(out / "field_labels.png"), cv2.IMREAD_UNCHANGED)
    assert cells.dtype == np.uint16 and cells.max() == len(pages)
    assert set(np.unique(nuclei)) - {0} <= set(np.unique(cells)) - {0}
    assert ((labels == 2) == (nuclei > 0)).all() and ((labels > 0) == (cells > 0)).all()
    assert not (out / "cell_cells.png").exists()  # auto: a single cell stays a single cell
    rows = list(csv.DictReader((out / "descriptors.csv").open()))
    field_rows = [r for r in rows if r["image"] == "field"]
    assert [int(r["cell_id"]) for r in field_rows] == list(range(1, len(pages) + 1))
    for r in field_rows:
        assert r["predicted_class"] in ("normal", "abnormal") and 0 <= float(r["p_abnormal"]) <= 1
        k = int(r["cell_id"])
        assert int(r["cell_area"]) == int((cells == k).sum())
    assert len([r for r in rows if r["image"] == "cell"]) == 1
    # a model given by name or file calls the fields too ("default" alone means the fields' own)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["field_model"] == summary["model"] == model_file
    assert summary["white_balance"] == "off"  # a classifier of one's own: its crops as they are
    # a correction to the nuclei is kept and measured on a re-run, with the classes of the first run
    nuclei[nuclei == 1] = 0
    cv2.imwrite(str(out / "field_nuclei.png"), nuclei)
    assert main(["segment", str(inputs), "--out", str(out), "--model", model_file, "--field", "auto",
                 "--workers", "1", "--quiet"]) == 0
    again = [r for r in csv.DictReader((out / "descriptors.csv").open()) if r["image"] == "field"]
    assert int(again[0]["nucleus_area"]) == 0 and again[0]["status"] == "kept existing labels"
    assert [r["predicted_class"] for r in again] == [r["predicted_class"] for r in field_rows]
    assert (cv2.imread(str(out / "field_nuclei.png"), cv2.IMREAD_UNCHANGED) == nuclei).all()


def test_a_white_balance_the_field_route_does_not_have_is_refused_before_anything_runs(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tmp_path), "--out", str(tmp_path / "out"), "--field", "--white-balance", "auto"])
    assert exit_info.value.code == 2
    assert "into-range" in capsys.readouterr().err and not (tmp_path / "out").exists()
