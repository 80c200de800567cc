"""The class decision: probabilities for one cell and the class called at an operating point."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..io.images import to_rgb_uint8
from .classifier import CellClassifier, ModelError
from .models import load_model
from .preprocess import preprocess


class Classification(NamedTuple):
    """What :func:`classify` answers for one cell (unpacks as ``cls, probability, probabilities``).

    Attributes
    ----------
    predicted_class : str
        The class called ("normal" / "abnormal") at the operating point asked for.
    probability : float
        The probability of ``predicted_class``.
    probabilities : dict of str to float
        Every class's probability (softmax of the network's logits).
    """

    predicted_class: str
    probability: float
    probabilities: dict


@torch.no_grad()
def classify(model, image, device=None, operating_point=None) -> Classification:
    """Classify one cell image as normal or abnormal.

    Parameters
    ----------
    model : str, path or CellClassifier
        ``"default"`` (the bundled model), a weights file, or a loaded classifier.
    image : ndarray
        (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ... (default: CUDA, else MPS, else CPU).
    operating_point : None, "screening" or float, optional
        How the class is called: None (the most probable class), ``"screening"`` (the model card's
        threshold on p(abnormal), chosen on the validation split for a high abnormal recall) or a
        number (call the cell abnormal when p(abnormal) >= it).

    Returns
    -------
    Classification
        ``(predicted_class, probability, probabilities)``, a named tuple.

    See Also
    --------
    napari_cervseg.explain : the same probabilities with a heatmap of why.

    Examples
    --------
    >>> from napari_cervseg import classify
    >>> from napari_cervseg.plugin.samples import sample_path  # doctest: +SKIP
    >>> classify("default", image).predicted_class  # doctest: +SKIP
    'abnormal'
    """
    model = load_model(model, device=device)
    rgb, _ = to_rgb_uint8(image)
    probs = class_probabilities(model, rgb)
    names = model.class_names
    best = decide(model, probs, operating_point)
    return Classification(names[best], float(probs[best]),
                          {n: float(p) for n, p in zip(names, probs, strict=False)})


@torch.no_grad()
def class_probabilities(model: CellClassifier, rgb: np.ndarray) -> np.ndarray:
    """The class probabilities (softmax) of one RGB uint8 cell image: of the image as it is, or
    for a model whose card gives ``class_views: 8`` their mean over its 4 quarter turns, each
    also mirrored (the views the training's test-time averaging uses)."""
    x = preprocess(rgb, model.preprocess, model.device)
    if model.class_views > 1:
        turns = [torch.rot90(x, k, (2, 3)) for k in range(4)]
        x = torch.cat(turns + [t.flip(3) for t in turns])
    with model.lock:
        return torch.softmax(model.net(x), 1).mean(0).cpu().numpy()


def abnormal_threshold(model: CellClassifier, operating_point) -> float | None:
    """The threshold on p(abnormal) that ``operating_point`` stands for (None: argmax)."""
    if operating_point in (None, "argmax"):
        return None
    if "abnormal" not in model.class_names:
        raise ModelError(f"an operating point needs an 'abnormal' class; this model has {list(model.class_names)}")
    if isinstance(operating_point, str) and not _is_number(operating_point):
        points = model.card.get("operating_points", {})
        if operating_point not in points:
            raise ModelError(f"model {model.name!r} has no operating point {operating_point!r} in its card"
                             f" (it has: {', '.join(points) or 'none'}); give a threshold on p(abnormal)"
                             " such as 0.3, or 'argmax'")
        return float(points[operating_point]["abnormal_threshold"])
    value = float(operating_point)
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"an abnormal threshold is a probability in [0, 1], got {value}")
    return value


def decide(model: CellClassifier, probs, operating_point=None) -> int:
    """Index of the class called for one cell's probabilities at ``operating_point``."""
    threshold = abnormal_threshold(model, operating_point)
    if threshold is None:
        return int(np.argmax(probs))
    abnormal = model.class_names.index("abnormal")
    if probs[abnormal] >= threshold:
        return abnormal
    others = [i for i in range(len(probs)) if i != abnormal]
    return max(others, key=lambda i: probs[i])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
