"""Operating points: how a cell is called abnormal from the classifier's probabilities."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from napari_cervseg import ModelError, segment_cell
from napari_cervseg.classify.predict import classify
from napari_cervseg.cli import main


@pytest.fixture()
def screening_model(trained_synthetic_model):
    model = copy.copy(trained_synthetic_model)
    model.card = {**trained_synthetic_model.card, "operating_points": {"screening": {"abnormal_threshold": 0.0}}}
    return model


def test_threshold_decides_the_class_not_the_probabilities(screening_model, one_cell):
    image = one_cell[0]
    _, _, probs = classify(screening_model, image)
    assert classify(screening_model, image, operating_point="screening")[0] == "abnormal"  # threshold 0
    assert classify(screening_model, image, operating_point=1.0)[0] == ("abnormal" if probs["abnormal"] >= 1.0
                                                                          else "normal")
    called, p, probs_at = classify(screening_model, image, operating_point=0.0)
    assert probs_at == probs and p == probs[called]


def test_segment_cell_reports_the_class_at_the_operating_point(screening_model, one_cell):
    image = one_cell[0]
    plain = segment_cell(image, model=screening_model)
    screened = segment_cell(image, model=screening_model, operating_point="screening")
    assert screened.predicted_class == "abnormal"
    assert screened.probability == screened.probabilities["abnormal"]
    np.testing.assert_array_equal(plain.labels, screened.labels)  # the segmentation is unchanged


def test_unknown_or_invalid_operating_points_are_named(trained_synthetic_model, one_cell):
    with pytest.raises(ModelError, match="no operating point 'screening'"):
        classify(trained_synthetic_model, one_cell[0], operating_point="screening")
    with pytest.raises(ModelError, match=r"probability in \[0, 1\]"):
        segment_cell(one_cell[0], model=trained_synthetic_model, operating_point=1.5)


def test_bundled_default_has_a_screening_point_and_cli_refuses_a_bad_one(tmp_path, capsys, one_cell):
    import cv2

    from napari_cervseg import load_model

    point = load_model("default").card["operating_points"]["screening"]
    assert 0.0 < point["abnormal_threshold"] < 0.5
    path = tmp_path / "cell.png"
    cv2.imwrite(str(path), one_cell[0][..., ::-1])
    assert main(["segment", str(path), "--out", str(tmp_path / "o"), "--operating-point", "sometimes",
                 "--quiet"]) == 2
    assert "no operating point 'sometimes'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
