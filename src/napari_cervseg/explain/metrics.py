"""Measuring explanations: heatmap entropy (the paper's Table 8), pixel flipping (AOPC), and
pytorch-grad-cam's ROAD and confidence-change metrics."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..classify import load_model
from ..classify.preprocess import preprocess
from ..io.images import to_rgb_uint8


def heatmap_entropy(heatmap: np.ndarray) -> float:
    """Shannon entropy (bits) of the heatmap quantised to 256 grey levels: lower = more focused.

    The same measure as ``skimage.measure.shannon_entropy`` of the 8-bit heatmap, which is what
    "image entropy" of a heatmap usually means (maximum 8 bits).
    """
    q = np.clip(np.rint(np.nan_to_num(heatmap) * 255), 0, 255).astype(np.uint8)
    counts = np.bincount(q.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


@torch.no_grad()
def pixel_flipping(model, image, heatmap: np.ndarray, target=None, steps: int = 10,
                   max_fraction: float = 0.5) -> dict:
    """Most-relevant-first pixel flipping at the model's input resolution.

    The heatmap is resized to the input; the top ``k`` fraction of pixels (k = max_fraction * i /
    steps) is replaced by the normalised image's mean colour, and the explained class's probability
    is recorded. Returns ``{"fractions", "probabilities", "aopc"}`` where AOPC is the mean drop
    p(0) - p(k) over the steps (higher = the heatmap found what the decision rests on).
    """
    import cv2

    model = load_model(model)
    rgb, _ = to_rgb_uint8(image)
    x = preprocess(rgb, model.preprocess, model.device)[0]
    size = x.shape[-1]
    heat = cv2.resize(np.asarray(heatmap, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    order = np.argsort(-heat.ravel(), kind="stable")
    fill = x.mean(dim=(1, 2), keepdim=True)
    fractions = np.linspace(0, max_fraction, steps + 1)
    batch = []
    for f in fractions:
        flipped = x.clone().view(3, -1)
        idx = torch.from_numpy(order[: int(round(f * size * size))]).to(x.device)
        flipped[:, idx] = fill.view(3, 1)
        batch.append(flipped.view_as(x))
    with model.lock:
        probs = torch.softmax(model.net(torch.stack(batch)), 1).cpu().numpy()
    t = int(probs[0].argmax()) if target is None else model.class_index(target)
    curve = probs[:, t]
    return {"fractions": fractions.tolist(), "probabilities": curve.tolist(),
            "aopc": float(np.mean(curve[0] - curve[1:]))}


def _input_and_cam(model, image, heatmap):
    import cv2

    rgb, _ = to_rgb_uint8(image)
    x = preprocess(rgb, model.preprocess, model.device)
    size = (x.shape[-1], x.shape[-2])
    cam = cv2.resize(np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, 1), size,
                     interpolation=cv2.INTER_AREA)
    return x, cam[None]


def _pgc_metrics():
    try:
        from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
        from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    except ImportError as exc:
        raise ImportError("ROAD and confidence-change metrics come from pytorch-grad-cam: run"
                          " `pip install 'grad-cam>=1.5.7'` (a dependency of napari-cervseg)") from exc
    return CamMultImageConfidenceChange, ROADMostRelevantFirstAverage, ROADLeastRelevantFirstAverage, \
        ClassifierOutputSoftmaxTarget


def road(model, image, heatmap: np.ndarray, target=None, percentiles=(20, 40, 60, 80), seed: int = 0) -> dict:
    """ROAD (Rong et al., ICML 2022) through pytorch-grad-cam, at the model's input resolution.

    The pixels above (MoRF) or below (LeRF) each percentile of the heatmap are removed and filled
    by noisy linear imputation (no out-of-distribution grey patches), and the change of the
    explained class's softmax probability is averaged over the percentiles. Returns
    ``{"morf", "lerf", "combined"}``: MoRF should be strongly negative and LeRF near zero for a
    faithful heatmap; combined = (LeRF - MoRF) / 2, higher is better. The imputation noise is
    seeded, so the figures repeat.

    The heatmap is passed as its rank (ties broken at random, seeded): pytorch-grad-cam removes
    the pixels on one side of ``np.percentile``, so a map whose lower 30 % is exactly zero (any
    ReLU'd CAM) would otherwise remove nothing or everything at the 20th percentile.
    """
    _, morf_cls, lerf_cls, softmax_target = _pgc_metrics()
    model = load_model(model)
    x, cam = _input_and_cam(model, image, heatmap)
    jitter = np.random.default_rng(seed).random(cam.size).reshape(cam.shape) * 1e-6
    order = np.argsort((cam + jitter).ravel(), kind="stable")
    ranks = np.empty(cam.size, np.float32)
    ranks[order] = np.arange(cam.size, dtype=np.float32) / max(cam.size - 1, 1)
    cam = ranks.reshape(cam.shape)
    with torch.no_grad():
        t = int(model.net(x).argmax(1)[0]) if target is None else model.class_index(target)
    targets = [softmax_target(t)]
    with model.lock, torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # pytorch-grad-cam passes torch tensors to np.percentile (a NumPy 2 deprecation)
        warnings.filterwarnings("ignore", message="__array_wrap__ must accept context", category=DeprecationWarning)
        torch.manual_seed(seed)
        morf = float(morf_cls(list(percentiles))(x, cam, targets, model.net)[0])
        lerf = float(lerf_cls(list(percentiles))(x, cam, targets, model.net)[0])
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}


def confidence_change(model, image, heatmap: np.ndarray, target=None) -> float:
    """pytorch-grad-cam's CamMultImageConfidenceChange: the explained class's softmax probability
    for the (normalised) input multiplied by the heatmap, minus that for the input. Near zero or
    positive when the heatmap keeps what the decision rests on; strongly negative when it does not."""
    conf_cls, _, _, softmax_target = _pgc_metrics()
    model = load_model(model)
    x, cam = _input_and_cam(model, image, heatmap)
    with torch.no_grad():
        t = int(model.net(x).argmax(1)[0]) if target is None else model.class_index(target)
    with model.lock:
        return float(conf_cls()(x, cam, [softmax_target(t)], model.net)[0])
