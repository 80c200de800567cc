"""Explanations: the Grad-CAM family (pytorch-grad-cam, or our own hooks on a named layer) and LRP (zennit).

The CAM family runs through pytorch-grad-cam when it is installed (``cam_backend="auto"``; see
:mod:`.pgc`), else through the built-in implementations below, which compute the same
formulas (tested against pytorch-grad-cam); ``gradcam++-paper`` is always built in.

Every method returns an :class:`Explanation` whose ``heatmap`` is float32 in [0, 1] at the
image's own height and width; LRP also keeps the raw per-pixel ``relevance`` (model-input size).

Grad-CAM++ comes in two variants:

- ``gradcam++`` (default): the formulation of Chattopadhyay et al. as implemented by
  pytorch-grad-cam, alpha = g^2 / (2 g^2 + sum_ij(A) g^3). It is the reference most users compare
  with, and it is well defined for ReLU networks.
- ``gradcam``, ``scorecam``, ``layercam``, ``eigencam``: the rest of the CAM family named by
  the paper as future work, implemented here on the same hooks (so every model and layer that
  works for one works for all); ``ensemble``: the pixel-wise median of the max-normalised
  Grad-CAM, Grad-CAM++, Score-CAM, Eigen-CAM and Layer-CAM maps (the authors' EnsembleCAM);
  ``ensemble-mean``: their pixel-wise mean (above the median on AOPC and ROAD on the test
  split, by a small margin: benchmarks/results/xai.md).
- ``gradcam++-paper``: the paper's equations 1-6 taken literally, with the second derivative
  d2L/dA2 replaced by g^2 (the exponential-score identity of Grad-CAM++; the true second
  derivative of a ReLU network is zero almost everywhere, which would make every alpha zero):
  G_k = sum_ij g, alpha = g^2 G_k / (2 g^2 + G_k g + eps), alpha normalised over ij,
  w_k = sum_ij alpha ReLU(g), CAM = ReLU(sum_k w_k A_k) / max.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..classify import load_model
from ..classify.preprocess import preprocess
from ..io.images import to_rgb_uint8
from .cam import cam_maps_with, resolve_cam_backend
from .lrp import lrp_relevance
from .methods import CAM_METHODS, DEFAULT_METHOD, _check_method


@dataclass
class Explanation:
    """One explained decision.

    Attributes
    ----------
    heatmap : ndarray (H, W) float32
        Relevance in [0, 1] at the image's size.
    method : str
    target_class : str
        The class explained.
    predicted_class : str
        The network's most probable class.
    probabilities : dict of str to float
    relevance : ndarray (S, S) or None
        LRP: the raw relevance summed over colour channels, at the model's input size.
    layer : str or None
        The CAM layer explained.
    seconds : float
        Time spent (per image, for a batch).
    extras : dict
        ``"timings"`` per stage and the ``"backend"`` that computed it.
    """

    heatmap: np.ndarray  # float32 (H, W) in [0, 1]
    method: str
    target_class: str  # the class explained
    predicted_class: str
    probabilities: dict  # class name -> probability
    relevance: np.ndarray | None = None  # LRP: raw relevance summed over channels (S, S)
    layer: str | None = None
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def probability(self) -> float:
        """Probability of the predicted class."""
        return float(self.probabilities[self.predicted_class])




def _to_image_size(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(maps.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def normalise_heatmap(heat: np.ndarray) -> np.ndarray:
    """Clip negatives, divide by the maximum (eq. 6); an all-zero map stays zero."""
    heat = np.maximum(np.nan_to_num(heat.astype(np.float32)), 0)
    peak = float(heat.max())
    return heat / peak if peak > 0 else np.zeros_like(heat)


def explain(model, image, method: str = DEFAULT_METHOD, target=None, layer: str | None = None,
            device=None, cam_backend: str = "auto") -> Explanation:
    """Explain the classifier's decision on one cell image with a heatmap.

    Parameters
    ----------
    model : str, path or CellClassifier
        ``"default"`` (the bundled model), a weights file, or a loaded classifier.
    image : ndarray
        (H, W) grey or (H, W, 3|4) RGB(A) cell image; uint8, uint16 or float.
    method : str
        One of :data:`~napari_cervseg.explain.methods.METHODS` (``"gradcam++"`` by default).
    target : str or int, optional
        Class to explain: None for the predicted class, or "abnormal" / "normal" / an index.
    layer : str, optional
        CAM layer name (default: the model card's ``cam_layer``); ignored by LRP.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ... (default: CUDA, else MPS, else CPU).
    cam_backend : {"auto", "pytorch-grad-cam", "builtin"}
        ``"auto"`` uses pytorch-grad-cam when installed; the one used is in ``extras["backend"]``.

    Returns
    -------
    Explanation
        ``heatmap`` float32 (H, W) in [0, 1] at the image's size, the explained and predicted
        class, probabilities; LRP also keeps the raw ``relevance``.

    See Also
    --------
    explain_batch : several cells in one pass.
    napari_cervseg.segment_cell : the segmentation this heatmap drives.

    Examples
    --------
    >>> from napari_cervseg import explain
    >>> e = explain("default", image, method="lrp-ruleset2")  # doctest: +SKIP
    >>> e.heatmap.shape == image.shape[:2]  # doctest: +SKIP
    True
    """
    return explain_batch(model, [image], method, target, layer, device, cam_backend)[0]


def explain_batch(model, images, method: str = DEFAULT_METHOD, target=None, layer: str | None = None,
                  device=None, cam_backend: str = "auto") -> list[Explanation]:
    """Explain several cells in one forward/backward pass (images may differ in size).

    Each heatmap is at its own image's size and equals what :func:`explain` gives for that image;
    faster on a GPU or for many small cells, since the network runs once on the stacked batch.

    Parameters
    ----------
    model : str, path or CellClassifier
    images : sequence of ndarray
        Cell images, each (H, W) grey or (H, W, 3|4) RGB(A).
    method, target, layer, device, cam_backend
        As for :func:`explain`.

    Returns
    -------
    list of Explanation
        One per image, in order; ``seconds`` and ``extras["timings"]`` are the batch's per image.
    """
    method = _check_method(method)
    model = load_model(model, device=device)
    backend = resolve_cam_backend(cam_backend, method) if method in CAM_METHODS else "zennit"
    rgbs = [to_rgb_uint8(im, name=f"image {i}")[0] for i, im in enumerate(images)]
    if not rgbs:
        return []
    t0 = time.perf_counter()
    x = torch.cat([preprocess(rgb, model.preprocess, model.device) for rgb in rgbs])
    t_pre = time.perf_counter()
    target_idx = None if target is None else model.class_index(target)
    relevance = None
    if method in CAM_METHODS:
        layer = layer or model.cam_layer
        with model.lock:
            maps, probs, idx = cam_maps_with(model, x, layer, method, target_idx, backend)
    else:
        with model.lock:
            maps, probs, idx = lrp_relevance(model, x, method, target_idx)
        relevance = maps.detach().cpu().numpy()
        layer = None
    maps_np, probs_np, names = maps.detach().cpu().numpy(), probs.cpu().numpy(), model.class_names
    heats = [normalise_heatmap(_to_image_size(maps_np[i], *rgb.shape[:2])) for i, rgb in enumerate(rgbs)]
    t_end = time.perf_counter()
    n = len(rgbs)
    timings = {"preprocess": (t_pre - t0) / n, "forward_backward": (t_end - t_pre) / n}
    return [Explanation(
        heatmap=heats[i], method=method, target_class=names[int(idx[i])],
        predicted_class=names[int(probs_np[i].argmax())],
        probabilities={c: float(p) for c, p in zip(names, probs_np[i], strict=True)},
        relevance=None if relevance is None else relevance[i], layer=layer, seconds=(t_end - t0) / n,
        extras={"timings": dict(timings), "backend": backend}) for i in range(n)]
