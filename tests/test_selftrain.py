"""The weakly supervised second stage: a U-Net fitted to the pipeline's own pseudo-masks."""

import json

import cv2
import numpy as np
import pytest

from napari_cervseg import segment_cell, segmentation_scores
from napari_cervseg.cli import main
from napari_cervseg.segment.student import SegmenterError, load_segmenter, save_segmenter
from napari_cervseg.workflows.selftrain import SelfTrainConfig, pseudo_labels, train_segmenter


@pytest.fixture(scope="module")
def segmenter_file(tmp_path_factory, synthetic_cells, trained_synthetic_model):
    images = [c[0] for c in synthetic_cells[:18]]
    labels = pseudo_labels(images, trained_synthetic_model)  # the teacher: Algorithm 1, no truth
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    seg = train_segmenter([images[i] for i in keep[:14]], [labels[i] for i in keep[:14]],
                          SelfTrainConfig(epochs=40, input_size=96, widths=(8, 16, 32, 64)),
                          [images[i] for i in keep[14:]], [labels[i] for i in keep[14:]], log=lambda *a: None,
                          card_extra={"teacher": {"method": "gradcam++"}})
    return save_segmenter(seg, tmp_path_factory.mktemp("seg") / "synthetic.safetensors")


def test_self_trained_segmenter_learns_the_cells_from_pseudo_labels(segmenter_file, synthetic_cells,
                                                                    trained_synthetic_model):
    scores = []
    for rgb, truth, cls in synthetic_cells[18:]:  # cells it never saw
        result = segment_cell(rgb, model=trained_synthetic_model, method="self-trained", segmenter=str(segmenter_file))
        assert result.labels.shape == truth.shape and set(np.unique(result.labels)) <= {0, 1, 2}
        assert result.heatmap is not None and result.predicted_class in ("normal", "abnormal")
        if cls == "abnormal":
            scores.append(segmentation_scores(result.labels, truth))
    # benchmarks/results/test_bounds.md (training seeds 0-5 x torch threads 1, 2). It learns what
    # its teacher (Algorithm 1) does, mistakes included: on normal cells the teacher itself fails
    # for some networks (test_refine_and_pipeline.py), so the 3 held-out abnormal cells are scored,
    # by their median (one of them failed for one network): lowest over those networks 0.934
    # (nucleus) / 0.937 (cytoplasm); with wrong pseudo-labels (all background) it is 0.0
    assert np.median([s["nucleus"]["dice"] for s in scores]) > 0.8, scores
    assert np.median([s["cytoplasm"]["dice"] for s in scores]) > 0.8, scores
    card = json.loads(segmenter_file.with_suffix(".json").read_text())
    assert "no ground-truth mask" in card["supervision"] and card["history"][-1]["epoch"] == 40


def test_bad_segmenter_files_are_explained(tmp_path, segmenter_file, one_cell, trained_synthetic_model):
    with pytest.raises(SegmenterError, match="not found"):
        load_segmenter(tmp_path / "missing.safetensors")
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(segmenter_file.read_bytes())
    with pytest.raises(SegmenterError, match="card lonely.json is missing"):
        load_segmenter(lonely)
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(segmenter_file.read_bytes())
    wrong.with_suffix(".json").write_text(json.dumps({"architecture": "compact"}))
    with pytest.raises(SegmenterError, match="not a 'small-unet' segmenter"):
        load_segmenter(wrong)
    with pytest.raises(ValueError, match="not found"):
        segment_cell(one_cell[0], model=trained_synthetic_model, method="self-trained",
                     segmenter=str(tmp_path / "nope.safetensors"))


def test_self_train_command_writes_a_segmenter_with_its_card(tmp_path, synthetic_cells, model_file):
    for i, (rgb, _, cls) in enumerate(synthetic_cells[:12]):
        folder = tmp_path / "data" / cls
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"c{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "seg.safetensors"
    assert main(["self-train", "--data", str(tmp_path / "data"), "--model", model_file, "--out", str(out),
                 "--epochs", "1", "--quiet"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["teacher"] == {"method": "gradcam++"} and card["classifier"] == model_file
    assert len(card["train_images"]) + len(card["val_images"]) <= 12
    assert load_segmenter(out).predict(synthetic_cells[0][0]).shape == synthetic_cells[0][0].shape[:2]


def test_pixels_near_pseudo_label_boundaries_can_be_left_out_of_the_loss():
    import torch

    from napari_cervseg.workflows.selftrain import IGNORE, ignore_boundaries

    labels = torch.zeros(1, 40, 40, dtype=torch.long)
    labels[0, 5:35, 5:35] = 1
    labels[0, 15:25, 15:25] = 2
    out = ignore_boundaries(labels, 2)
    assert out[0, 0, 0] == 0 and out[0, 10, 10] == 1 and out[0, 20, 20] == 2  # far from any edge: kept
    assert out[0, 5, 20] == IGNORE and out[0, 3, 20] == IGNORE and out[0, 15, 20] == IGNORE  # on / near edges
    assert out[0, 1, 20] == 0  # beyond the band
