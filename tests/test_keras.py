"""Keras 3 .keras / .h5 classifiers (the paper's XceptionNet format) through the torch backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")  # as the loader does; keras reads it on import
pytest.importorskip("keras")

from napari_cervseg import ModelError, classify, explain, load_model, segment_cell  # noqa: E402
from napari_cervseg.classify.keras_models import _import_keras  # noqa: E402
from napari_cervseg.classify.preprocess import preprocess_array  # noqa: E402
from napari_cervseg.explain import ExplainError  # noqa: E402


def _paper_head(keras, features, units=8):
    """The paper's classifier head: GAP, BatchNorm, Dense ReLU with L2, Dropout 0.45, softmax."""
    x = keras.layers.GlobalAveragePooling2D()(features)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4))(x)
    x = keras.layers.Dropout(0.45)(x)
    return keras.layers.Dense(2, activation="softmax")(x)


@pytest.fixture(scope="module")
def small_keras_model(tmp_path_factory):
    keras = _import_keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="last_conv")(x)
    model = keras.Model(inp, _paper_head(keras, x))
    folder = tmp_path_factory.mktemp("keras")
    model.save(folder / "cells.keras")
    model.save(folder / "cells.h5")
    return model, folder


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_model_gives_the_keras_probabilities_and_grad_cam(small_keras_model, one_cell, suffix):
    cell_image = one_cell[0]
    keras_model, folder = small_keras_model
    model = load_model(folder / f"cells{suffix}", device="cpu")
    assert model.preprocess.input_size == 48 and model.class_names == ("normal", "abnormal")
    assert not model.lrp_applicable and model.card["keras_cam_layer"] == "last_conv"
    # same input, same probabilities as Keras itself (the softmax layer is replaced by logits)
    x = preprocess_array(cell_image, model.preprocess)
    expected = np.asarray(keras_model.predict(x.transpose(1, 2, 0)[None], verbose=0))[0]
    _, _, probabilities = classify(model, cell_image)
    assert np.allclose([probabilities["normal"], probabilities["abnormal"]], expected, atol=1e-5)
    heat = explain(model, cell_image, method="gradcam++")
    assert heat.heatmap.shape == cell_image.shape[:2] and np.isfinite(heat.heatmap).all()
    assert heat.heatmap.max() > heat.heatmap.min()
    with pytest.raises(ExplainError, match="LRP is not available"):
        explain(model, cell_image, method="lrp-ruleset1")
    # an untrained model's map need not find a nucleus; the pipeline must run through on it
    seg = segment_cell(cell_image, model=model, method="gradcam++")
    assert seg.labels.shape == cell_image.shape[:2] and set(np.unique(seg.labels)) <= {0, 1, 2}
    assert seg.predicted_class in ("normal", "abnormal") and seg.heatmap.shape == cell_image.shape[:2]


def test_gradients_reach_the_cam_layer(small_keras_model):
    model = load_model(small_keras_model[1] / "cells.keras", device="cpu")
    seen = {}
    model.net.cam.register_forward_hook(lambda m, i, o: seen.setdefault("maps", o))
    x = torch.rand(1, 3, 48, 48)
    logits = model.net(x)
    grad = torch.autograd.grad(logits[0, 1], seen["maps"])[0]
    assert grad.shape == seen["maps"].shape == (1, 16, 21, 21) and grad.abs().sum() > 0


def test_card_beside_the_keras_file_sets_classes_and_preprocessing(small_keras_model, tmp_path):
    _, folder = small_keras_model
    target = tmp_path / "m.keras"
    target.write_bytes((folder / "cells.keras").read_bytes())
    target.with_suffix(".json").write_text(json.dumps({
        "class_names": ["abnormal", "normal"], "cam_layer": "conv1",
        "preprocess": {"equalise": "none", "mean": [0, 0, 0], "std": [1, 1, 1]}}))
    model = load_model(target, device="cpu")
    assert model.class_names == ("abnormal", "normal")
    assert model.preprocess.equalise == "none" and model.card["keras_cam_layer"] == "conv1"
    target.with_suffix(".json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    with pytest.raises(ModelError, match="2 outputs but the card names 3 classes"):
        load_model(target, device="cpu")


def test_keras_model_with_python_code_is_refused_not_run(tmp_path):
    keras = _import_keras()
    marker = tmp_path / "ran"
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 3)(inp)
    x = keras.layers.Lambda(lambda t: t * 2)(x)
    model = keras.Model(inp, _paper_head(keras, x))
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"lam{suffix}")
        with pytest.raises(ModelError, match="Lambda layer"):
            load_model(tmp_path / f"lam{suffix}", device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_corrupt_keras_file_gets_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="not a readable Keras model"):
        load_model(path, device="cpu")


def test_missing_keras_names_the_extra(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"PK")
    code = ("import sys; sys.modules['keras'] = None\n"
            "from napari_cervseg import load_model, ModelError\n"
            f"try:\n    load_model({str(tmp_path / 'm.keras')!r})\n"
            "except ModelError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'napari-cervseg[keras]'" in out.stdout, out.stderr


@pytest.mark.slow
def test_paper_xception_keras_model_loads_and_explains(tmp_path, one_cell):
    """The paper's exact layout: keras.applications.Xception base + the paper's head."""
    cell_image = one_cell[0]
    keras = _import_keras()
    base = keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3))
    model = keras.Model(base.input, _paper_head(keras, base.output, units=256))
    model.save(tmp_path / "xception256.keras")
    loaded = load_model(tmp_path / "xception256.keras", device="cpu")
    assert loaded.card["keras_cam_layer"] == "block14_sepconv2_act"
    x = preprocess_array(cell_image, loaded.preprocess)
    expected = np.asarray(model.predict(x.transpose(1, 2, 0)[None], verbose=0))[0]
    _, _, probabilities = classify(loaded, cell_image)
    assert np.allclose([probabilities["normal"], probabilities["abnormal"]], expected, atol=1e-4)
    assert explain(loaded, cell_image, method="gradcam++").heatmap.shape == cell_image.shape[:2]
