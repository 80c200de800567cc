"""Classifier training crops cut from composed fields (issue 22, item 3), and fine-tuning a model
on them: each crop holds the cell whose image's class it carries, and fine-tuning keeps the
initial model's split (no test cell is trained on)."""

import numpy as np
import pytest
from synthetic import synthetic_cell, write_class_folders

from napari_cervseg.workflows.field_crops import field_crops
from napari_cervseg.workflows.finder_training import FinderTrainConfig, TrainingCell, one_cell
from napari_cervseg.workflows.train import TrainConfig, train

BACKGROUND = np.array([222, 218, 228], np.float32)
#: class 0 cells absorb red, class 1 cells absorb blue: a crop's colour says whose cell it holds
TINTS = {0: np.array([0.55, 1.0, 1.0]), 1: np.array([1.0, 1.0, 0.55])}


def _tinted_cells(n=8):
    cells, labels = [], []
    for i in range(n):
        label = i % 2
        rgb, lab, _ = synthetic_cell((70, 80), abnormal=bool(label), seed=i)
        lab = one_cell(lab)
        tinted = rgb.astype(np.float32)
        tinted[lab > 0] *= TINTS[label]
        cells.append(TrainingCell(np.clip(tinted, 0, 255).astype(np.uint8), lab, BACKGROUND, source=i))
        labels.append(label)
    return cells, np.array(labels)


@pytest.mark.parametrize("seed", range(4))
def test_each_field_crop_holds_a_cell_of_the_class_it_carries(seed):
    cells, labels = _tinted_cells()
    config = FinderTrainConfig(field_size=192, scale_range=(0.8, 1.0), grey_share=0.0, pale_nucleus_share=0.0,
                               n_rays=4)
    crops, classes = field_crops(cells, labels, n_fields=12, size=48, seed=seed, config=config)
    assert crops.shape[1:] == (48, 48, 3) and crops.dtype == np.uint8 and len(crops) == len(classes) >= 10
    assert set(classes.tolist()) == {0, 1}
    centre = crops[:, 16:32, 16:32].reshape(len(crops), -1, 3).astype(np.float32).mean(1)
    # red over blue: 0.1-0.7 in class 0's cells, 0.9-2 in class 1's (8 seeds)
    looks_like = (centre[:, 0] / centre[:, 2] > 0.65).astype(int)
    # neighbours overlap a crop's centre now and then (over 8 seeds at most 2 crops of 23-39 look
    # like the other class); most crops are their own cell's
    assert (looks_like == classes).mean() >= 0.85


def test_field_crops_need_a_pseudo_labelled_cell():
    with pytest.raises(ValueError, match="no pseudo-labelled cell"):
        field_crops([], [], n_fields=3, size=48)


def _config(**kw):
    settings = {"arch": "compact", "arch_kwargs": {"widths": [8, 8, 16, 16]}, "input_size": 48, "epochs": 2,
                "batch_size": 16, "tta": False, "equalise": "none"}
    return TrainConfig(**{**settings, **kw})


def test_fine_tuning_on_field_crops_keeps_the_initial_models_split(tmp_path, synthetic_cells):
    data = write_class_folders(tmp_path / "data", synthetic_cells)
    first = train(data, tmp_path / "first.safetensors", _config(), device="cpu", log=None)
    lines = []
    tuned = train(data, tmp_path / "tuned.safetensors",
                  _config(init=str(tmp_path / "first.safetensors"), field_crop_fields=3, seed=5), device="cpu",
                  log=lines.append)
    # another seed would draw another split: the initial model's is kept, so no test cell is trained on
    assert tuned.card["training"]["split"] == first.card["training"]["split"]
    assert tuned.card["pretrained"].startswith("fine-tuned from")
    assert any("field crops" in line for line in lines)


def test_fine_tuning_a_model_of_another_architecture_is_refused(tmp_path, synthetic_cells):
    data = write_class_folders(tmp_path / "data", synthetic_cells)
    train(data, tmp_path / "first.safetensors", _config(), device="cpu", log=None)
    with pytest.raises(ValueError, match="arch_kwargs"):
        train(data, tmp_path / "other.safetensors",
              _config(init=str(tmp_path / "first.safetensors"), arch_kwargs={"widths": [8, 8, 8, 8]}),
              device="cpu", log=None)
