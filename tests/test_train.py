"""Training recipes: the paper's augmentation sets and multiplication, optimisers, resuming."""

import cv2
import numpy as np
import pytest
import torch
from synthetic import write_class_folders

from napari_cervseg.classify import load_model
from napari_cervseg.classify.augment import AUGMENTATION_SETS, paper_augment
from napari_cervseg.workflows.train import TrainConfig, paper_recipe, screening_threshold, train


def test_paper_augmentation_multiplies_abnormal_by_8_and_normal_by_24(synthetic_cells):
    images = np.stack([cv2.resize(c[0], (64, 64)) for c in synthetic_cells[:5]])
    labels = np.array([1, 0, 1, 1, 0])
    out, out_labels, sets = paper_augment(images, labels, seed=3)
    assert len(out) == 3 * 8 + 2 * 24 and out.shape[1:] == (64, 64, 3) and out.dtype == np.uint8
    assert (out_labels == 1).sum() == 24 and (out_labels == 0).sum() == 48
    assert np.bincount(sets).tolist() == [3 + 6] * 8  # every set used once per abnormal, 3x per normal
    again, _, _ = paper_augment(images, labels, seed=3)
    np.testing.assert_array_equal(out, again)  # deterministic given the seed
    other, _, _ = paper_augment(images, labels, seed=4)
    assert not np.array_equal(out, other)


@pytest.mark.parametrize("augment", AUGMENTATION_SETS, ids=lambda f: f.__name__)
def test_each_augmentation_set_changes_the_image_and_keeps_its_shape(augment, one_cell):
    img = cv2.resize(one_cell[0], (96, 80))
    out = augment(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 0.5


def test_paper_recipe_is_the_papers_per_architecture():
    vgg = paper_recipe(TrainConfig(arch="vgg16-adapted128"))
    assert (vgg.optimizer, vgg.lr, vgg.step_epochs, vgg.epochs, vgg.augmentation) == ("sgd-step", 1e-3, 7, 50, "paper")


@pytest.fixture()
def tiny_folder(tmp_path, synthetic_cells):
    return write_class_folders(tmp_path / "data", synthetic_cells)


def _config(**kw):
    settings = {"arch": "compact", "arch_kwargs": {"widths": [8, 8, 16, 16]}, "input_size": 48, "epochs": 3,
                    "batch_size": 16, "tta": False, "equalise": "none"}
    return TrainConfig(**{**settings, **kw})


@pytest.mark.parametrize("recipe", ["online", "paper"])
def test_an_interrupted_run_resumes_to_the_same_model(tmp_path, tiny_folder, recipe):
    config = _config(augmentation=recipe, optimizer="sgd-step" if recipe == "paper" else "adamw-onecycle",
                     lr=1e-2)
    whole = train(tiny_folder, tmp_path / "whole.safetensors", config, device="cpu", log=None)

    def stop_after_epoch_2(stage, fraction):
        if stage.startswith("2 of "):
            raise KeyboardInterrupt  # the user pressed Ctrl-C, the machine went down...

    out = tmp_path / "cut.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_folder, out, config, device="cpu", progress=stop_after_epoch_2, log=None)
    assert out.with_suffix(".checkpoint.pt").exists() and not out.exists()
    resumed = train(tiny_folder, out, config, device="cpu", log=None, resume=True)
    assert not out.with_suffix(".checkpoint.pt").exists()
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values(), strict=False):
        torch.testing.assert_close(a, b, msg=name)
    assert [h["epoch"] for h in resumed.card["training"]["history"]] == [1, 2, 3]


def test_resuming_with_other_settings_is_refused(tmp_path, tiny_folder):
    out = tmp_path / "m.safetensors"

    def stop(stage, fraction):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_folder, out, _config(), device="cpu", progress=stop, log=None)
    with pytest.raises(ValueError, match="other settings"):
        train(tiny_folder, out, _config(lr=0.5), device="cpu", log=None, resume=True)


def test_xception_heads_train_save_load_and_explain(tmp_path, tiny_folder, one_cell):
    pytest.importorskip("timm")
    from napari_cervseg import explain
    from napari_cervseg.classify import build_architecture, load_model

    head = build_architecture("xception-1024")
    assert head.dense.out_features == 1024 and head.dropout.p == 0.45
    config = paper_recipe(TrainConfig(arch="xception-256"))
    assert (config.optimizer, config.batch_size, config.epochs) == ("adam", 16, 20)
    from dataclasses import replace

    config = replace(config, epochs=1, augmentation="online", input_size=64, tta=False, equalise="none")
    model = train(tiny_folder, tmp_path / "x.safetensors", config, device="cpu", log=None)
    loaded = load_model(tmp_path / "x.safetensors")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.net.eval()(x), loaded.net(x))
    e = explain(loaded, one_cell[0], method="gradcam++")
    assert e.heatmap.shape == one_cell[0].shape[:2] and loaded.card["architecture"] == "xception-256"
    with pytest.raises(ValueError, match="LRP is not available"):
        explain(loaded, one_cell[0], method="lrp-ruleset1")


def test_time_limit_keeps_the_best_epoch_and_says_why_it_stopped(tmp_path, tiny_folder):
    out = tmp_path / "new" / "folder" / "m.safetensors"  # a folder that does not exist yet
    model = train(tiny_folder, out, _config(max_seconds=0.0, epochs=5), device="cpu", log=None)
    training = model.card["training"]
    assert training["epochs_run"] == 1 and training["stopped_by"] == "time limit"
    assert load_model(out).card["test_metrics"]["n"] > 0


def test_card_has_a_screening_operating_point_chosen_on_validation(tmp_path, tiny_folder):
    model = train(tiny_folder, tmp_path / "m.safetensors", _config(), device="cpu", log=None)
    point = model.card["operating_points"]["screening"]
    assert 0.0 <= point["abnormal_threshold"] <= 1.0
    assert point["val_abnormal_recall"] >= point["target_abnormal_recall"] == 0.98
    assert point["test_metrics"]["n"] == model.card["test_metrics"]["n"]
    assert "validation" in point["chosen_on"]


def test_screening_threshold_is_the_largest_reaching_the_recall():
    p = np.array([0.1, 0.2, 0.3, 0.9, 0.95, 0.05])
    y = np.array([1, 1, 1, 1, 1, 0])
    assert screening_threshold(p, y, 1.0) == 0.1  # every abnormal cell called
    assert screening_threshold(p, y, 0.8) == 0.2  # one of five may be missed
    with pytest.raises(ValueError, match="no abnormal"):
        screening_threshold(p, np.zeros(6), 0.98)
