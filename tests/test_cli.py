import csv
import json

import cv2
import numpy as np

from napari_cervseg.cli import main


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_segment_writes_labels_heatmap_overlay_and_one_csv(tmp_path, synthetic_cells, model_file):
    inputs = [_write(tmp_path / f"cell{i}.png", synthetic_cells[i][0]) for i in range(2)]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG truncated")
    out = tmp_path / "out"
    code = main(["segment", *map(str, inputs), str(bad), "--out", str(out), "--model", model_file, "--quiet"])
    assert code == 1  # one input failed
    for i in range(len(inputs)):
        labels = cv2.imread(str(out / f"cell{i}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint8 and labels.shape == synthetic_cells[i][0].shape[:2]
        assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 2).any()
        assert (out / f"cell{i}_heatmap.png").exists() and (out / f"cell{i}_overlay.png").exists()
    rows = list(csv.DictReader((out / "descriptors.csv").open()))
    assert [r["image"] for r in rows] == ["cell0", "cell1"]
    assert float(rows[0]["nucleus_area"]) > 0 and rows[0]["predicted_class"] in ("normal", "abnormal")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 2 and summary["failed"][0]["input"].endswith("broken.png")


def test_rerun_keeps_hand_corrected_labels(tmp_path, synthetic_cells, model_file):
    src = _write(tmp_path / "cell.png", synthetic_cells[0][0])
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--model", model_file, "--quiet"]) == 0
    labels_path = out / "cell_labels.png"
    corrected = cv2.imread(str(labels_path), cv2.IMREAD_UNCHANGED)
    corrected[:5, :5] = 1  # the user paints
    cv2.imwrite(str(labels_path), corrected)
    (out / "descriptors.csv").unlink()
    assert main(["segment", str(src), "--out", str(out), "--model", model_file, "--quiet"]) == 0
    np.testing.assert_array_equal(cv2.imread(str(labels_path), cv2.IMREAD_UNCHANGED), corrected)
    row = next(csv.DictReader((out / "descriptors.csv").open()))
    assert row["status"] == "kept existing labels"
    assert int(row["cytoplasm_area"]) == int((corrected == 1).sum())


def test_bad_model_and_no_inputs_exit_with_a_message(tmp_path, capsys):
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no input images" in capsys.readouterr().err
    img = _write(tmp_path / "a.png", np.zeros((10, 10, 3), np.uint8))
    assert main(["segment", str(img), "--out", str(tmp_path / "o"), "--model", "missing.safetensors"]) == 2
    assert "neither a bundled model" in capsys.readouterr().err


def test_unwritable_output_folder_is_refused_with_a_message(tmp_path, synthetic_cells, capsys):
    """An --out that cannot be created (here: below a regular file, which fails even for root)."""
    src = _write(tmp_path / "cell.png", synthetic_cells[0][0])
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    assert main(["segment", str(src), "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "cannot create output folder" in capsys.readouterr().err
    assert blocker.read_text() == "a file"  # nothing of the user's was touched


def test_models_lists_the_bundled_default_with_its_figures(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "vgg16-adapted128" in out and "xception-256" in out
    assert "bundled: default (compact" in out and "screening point" in out and "trained" in out
    assert "bundled: ensemble3 (compact-ensemble" in out and "ensemble of 3 compact networks" in out


def test_segment_at_the_screening_point_reports_that_class(tmp_path):
    from napari_cervseg.plugin.samples import load_sample

    # a real Herlev cell: the bundled model gives no verdict on what is unlike its training cells
    image = _write(tmp_path / "cell.png", load_sample("abnormal"))
    assert main(["segment", str(image), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["segment", str(image), "--out", str(tmp_path / "b"), "--operating-point", "0", "--quiet"]) == 0
    with open(tmp_path / "b" / "descriptors.csv") as f:
        row = next(csv.DictReader(f))
    assert row["predicted_class"] == "abnormal"  # threshold 0: every cell is called abnormal
    assert (cv2.imread(str(tmp_path / "a" / "cell_labels.png"), cv2.IMREAD_UNCHANGED)
            == cv2.imread(str(tmp_path / "b" / "cell_labels.png"), cv2.IMREAD_UNCHANGED)).all()


def test_grouping_is_an_ordinary_option_through_cli_and_batch(tmp_path, synthetic_cells, model_file):
    """``--grouping`` is built from the settings like any option; it reaches segment_cell through
    BatchConfig.options (the run card still names it)."""
    from napari_cervseg import segment_cell

    src = _write(tmp_path / "cell.png", synthetic_cells[0][0])
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--model", model_file, "--method", "gradcam++",
                 "--grouping", "kmeans", "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grouping"] == "kmeans" and summary["options"] == {"grouping": "kmeans"}
    expected = segment_cell(cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB), model=model_file,
                            method="gradcam++", grouping="kmeans")
    assert expected.settings["grouping"] == "kmeans"
    np.testing.assert_array_equal(cv2.imread(str(out / "cell_labels.png"), cv2.IMREAD_UNCHANGED), expected.labels)


def test_batch_config_grouping_moves_into_the_options():
    import pytest

    from napari_cervseg.workflows.batch import BatchConfig

    config = BatchConfig(grouping="kmeans", options={"dilation": 5.0})
    assert config.options == {"dilation": 5.0, "grouping": "kmeans"} and config.grouping is None
    assert BatchConfig(options={"grouping": "gmm"}).options == {"grouping": "gmm"}
    with pytest.raises(ValueError, match="disagree"):
        BatchConfig(grouping="gmm", options={"grouping": "kmeans"})
