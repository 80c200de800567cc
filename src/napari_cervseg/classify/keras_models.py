"""Keras ``.keras`` / ``.h5`` classifiers (the paper's XceptionNet models) through Keras 3's torch backend.

Optional: ``pip install 'napari-cervseg[keras]'``. Keras 3 with ``KERAS_BACKEND=torch`` builds the
saved model out of torch operations, so Grad-CAM and the CAM family work on it like on any torch
network here (LRP does not: its rules are written for this package's plain conv stacks).

Loading never executes code from the file: ``keras.saving.load_model(..., safe_mode=True)`` refuses
Lambda layers holding Python bytecode, in ``.keras`` and legacy ``.h5`` files alike.

How the model is fed and read comes from an optional JSON card beside it (``model.json`` next to
``model.keras``): ``class_names`` (default ``["normal", "abnormal"]``, in the order of the model's
outputs), ``preprocess`` (default: median 3, luminance equalisation, scaled to [-1, 1] as Keras'
``xception.preprocess_input`` does, at the model's own input size) and ``cam_layer`` (a Keras layer
name; default: the last layer with a 4-D output, e.g. Xception's ``block14_sepconv2_act``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from .classifier import CLASS_NAMES, CellClassifier, ModelError, read_card_json, validate_card
from .preprocess import PreprocessConfig

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def _import_keras():
    """Keras 3 on the torch backend, or a ModelError that says what to install or set."""
    already = "keras" in sys.modules and sys.modules["keras"] is not None
    if not already:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise ModelError("Keras models need Keras 3: pip install 'napari-cervseg[keras]'"
                         f" ({type(exc).__name__}: {exc})") from exc
    version = getattr(keras, "__version__", "0")
    if int(version.split(".")[0]) < 3:
        raise ModelError(f"Keras models need Keras 3 (found {version}): pip install 'keras>=3'")
    backend = keras.backend.backend()
    if backend != "torch":
        raise ModelError(f"Keras is running on the {backend!r} backend in this process; Keras models load"
                         " here only on the torch backend: set KERAS_BACKEND=torch before anything imports"
                         " keras")
    return keras


class KerasClassifierNet(nn.Module):
    """A Keras classifier as a torch module: NCHW input -> logits.

    The Keras model is split at ``cam_layer``: ``features`` (input -> that layer's NHWC output) and
    ``head`` (that output -> the last hidden layer), and its final softmax Dense layer is replaced by
    the same Dense without the softmax (``classifier``), so the network gives logits as the rest of
    the package expects. ``cam`` is an identity on the feature maps (NCHW) that the head really
    reads from, so forward and backward hooks on it see the activations and their gradients.
    """

    def __init__(self, keras_model, cam_layer: str):
        super().__init__()
        keras = _import_keras()
        layer = keras_model.get_layer(cam_layer)
        last = keras_model.layers[-1]
        softmax_dense = (type(last).__name__ == "Dense"
                         and getattr(last.activation, "__name__", "") == "softmax")
        top = keras_model.layers[-2].output if softmax_dense else keras_model.outputs[0]
        try:
            self.features = keras.Model(keras_model.inputs, layer.output)
            self.head = keras.Model(layer.output, top)
        except ValueError as exc:  # "graph disconnected": later layers also read earlier tensors
            raise ModelError(f"cannot split the Keras model at layer {cam_layer!r} ({exc}); name, as"
                             " 'cam_layer' in the model's card, a layer whose output alone feeds the"
                             " rest") from exc
        self.cam = nn.Identity()
        if softmax_dense:
            kernel = torch.as_tensor(last.kernel.numpy())
            self.classifier = nn.Linear(kernel.shape[0], kernel.shape[1], bias=last.use_bias)
            with torch.no_grad():
                self.classifier.weight.copy_(kernel.T)
                if last.use_bias:
                    self.classifier.bias.copy_(torch.as_tensor(last.bias.numpy()))
        else:
            self.classifier = nn.Identity()  # the model already ends in logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x.permute(0, 2, 3, 1), training=False)
        maps = self.cam(maps.permute(0, 3, 1, 2))
        return self.classifier(self.head(maps.permute(0, 2, 3, 1), training=False))


def _last_map_layer(keras_model) -> str:
    for layer in reversed(keras_model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4:
            return layer.name
    raise ModelError("the Keras model has no layer with 4-D (image-like) output for Grad-CAM;"
                     " name one as 'cam_layer' in the model's card")


def load_keras_model(path, device=None) -> CellClassifier:
    """A ``.keras`` / ``.h5`` Keras 3 classifier as a :class:`CellClassifier` (Grad-CAM, no LRP)."""
    path = Path(path)
    keras = _import_keras()
    card_path = path.with_suffix(".json")
    card = validate_card(read_card_json(card_path), card_path, keras=True) if card_path.exists() else {}
    try:
        keras_model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except ValueError as exc:
        if "Lambda" in str(exc) or "safe_mode" in str(exc):
            raise ModelError(f"{path}: refused: the model holds Python code (a Lambda layer) that loading"
                             " would execute; rebuild it without Lambda layers") from exc
        raise ModelError(f"{path}: not a readable Keras model ({exc})") from exc
    except (OSError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a readable Keras model ({type(exc).__name__}: {exc})") from exc
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise ModelError(f"{path}: expected one image input and one class output, got"
                         f" {len(keras_model.inputs)} inputs and {len(keras_model.outputs)} outputs")
    in_shape = tuple(keras_model.inputs[0].shape)
    out_classes = keras_model.outputs[0].shape[-1]
    if len(in_shape) != 4 or in_shape[-1] != 3:
        raise ModelError(f"{path}: expected an RGB image input (batch, height, width, 3), got {in_shape}")
    class_names = tuple(card.get("class_names", CLASS_NAMES))
    if out_classes != len(class_names):
        raise ModelError(f"{path}: the model has {out_classes} outputs but the card names"
                         f" {len(class_names)} classes {list(class_names)}; give 'class_names' in {path.stem}.json")
    preprocess = {"input_size": in_shape[1] or 224, "median_ksize": 3, "equalise": "luminance",
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], **card.get("preprocess", {})}
    preprocess["input_size"] = int(card.get("input_size") or preprocess["input_size"])  # the card wins
    cam_layer = card.get("cam_layer") or _last_map_layer(keras_model)
    net = KerasClassifierNet(keras_model, cam_layer).eval()
    full_card = {"name": path.stem, "architecture": "keras", "keras_version": keras.__version__,
                 "keras_cam_layer": cam_layer, **card, "class_names": list(class_names)}
    model = CellClassifier(net=net, card=full_card, preprocess=PreprocessConfig.from_dict(preprocess),
                           class_names=class_names, cam_layer="cam", lrp_applicable=False, source=str(path))
    return model.to(device)
