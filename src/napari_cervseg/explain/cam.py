"""The CAM family: Grad-CAM, Grad-CAM++ (two variants), Score-CAM, Layer-CAM, Eigen-CAM and the
ensembles, through pytorch-grad-cam when installed or our own hooks on a named layer (the same
formulas and post-processing, tested against pytorch-grad-cam)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classify import CellClassifier
from .methods import CAM_BACKENDS, ENSEMBLE_MEMBERS, ENSEMBLES, ExplainError


def _module(net: nn.Module, name: str) -> nn.Module:
    modules = dict(net.named_modules())
    if name not in modules:
        candidates = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Sequential)) and n]
        raise ExplainError(f"layer {name!r} not found in the model; candidates: {', '.join(candidates[-8:])}")
    return modules[name]


def _activations_and_gradients(net: nn.Module, x: torch.Tensor, layer: str, target: int | None):
    """Forward with a hook on ``layer``; backprop the target logit. Returns (A, dL/dA, probabilities)."""
    store = {}

    def hook(_module, _inp, out):
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    handle = _module(net, layer).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # ensures a graph even if the layer's params are frozen
            logits = net(x)
            probs = torch.softmax(logits.detach(), 1)
            idx = probs.argmax(1) if target is None else torch.full((x.shape[0],), target, device=x.device)
            score = logits.gather(1, idx[:, None]).sum()
            net.zero_grad(set_to_none=True)
            score.backward()
    finally:
        handle.remove()
    return store["act"].detach(), store["grad"].detach(), probs, idx


def cam_weights(activations: torch.Tensor, grads: torch.Tensor, method: str, eps: float = 1e-7) -> torch.Tensor:
    """Channel weights w_k (N, K) for the CAM variants; see the module docstring for the formulas."""
    if method == "gradcam":
        return grads.mean(dim=(2, 3))
    g2 = grads.pow(2)
    if method == "gradcam++":
        sum_a = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g2 * grads + 1e-6)  # pytorch-grad-cam's epsilon
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * F.relu(grads)).sum(dim=(2, 3))
    if method == "gradcam++-paper":
        big_g = grads.sum(dim=(2, 3), keepdim=True)  # eq. 1
        alpha = g2 * big_g / (2 * g2 + big_g * grads + eps)  # eq. 2 with d2L/dA2 := g^2
        alpha = alpha / (alpha.sum(dim=(2, 3), keepdim=True) + eps)  # eq. 3
        return (alpha * F.relu(grads)).sum(dim=(2, 3))  # eq. 4
    raise ExplainError(f"not a CAM method: {method}")


def _per_map_max_normalise(cam: torch.Tensor) -> torch.Tensor:
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    return cam / peak


@torch.no_grad()
def _score_weights(net: nn.Module, x: torch.Tensor, act: torch.Tensor, idx: torch.Tensor,
                   batch: int = 64) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020) as pytorch-grad-cam computes it: each activation map,
    upsampled (bilinear, corners aligned) and min-max normalised, masks the input; the target
    logits of the K masked inputs, softmax-normalised over the K channels, are the weights."""
    n, k = act.shape[:2]
    maps = F.interpolate(act, size=x.shape[-2:], mode="bilinear", align_corners=True)
    lo = maps.flatten(2).min(-1).values[..., None, None]
    hi = maps.flatten(2).max(-1).values[..., None, None]
    masks = (maps - lo) / (hi - lo + 1e-8)
    scores = torch.zeros(n, k, device=x.device)
    for i in range(n):
        for start in range(0, k, batch):
            m = masks[i, start:start + batch, None]  # (b, 1, H, W)
            scores[i, start:start + batch] = net(x[i:i + 1] * m)[:, idx[i]]
    return torch.softmax(scores, dim=1)


def _eigen_maps(act: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations projected on their first principal
    component (sign chosen so the map correlates positively with the mean activation)."""
    out = []
    for a in act:
        k, h, w = a.shape
        flat = a.reshape(k, h * w).T  # (hw, K)
        centred = flat - flat.mean(0, keepdim=True)
        _, _, vt = torch.linalg.svd(centred, full_matrices=False)
        proj = centred @ vt[0]
        if torch.dot(proj, flat.mean(1) - flat.mean()) < 0:
            proj = -proj
        out.append(proj.reshape(h, w))
    return torch.stack(out)


def resolve_cam_backend(backend: str | None = "auto", method: str | None = None) -> str:
    """"pytorch-grad-cam" or "builtin" for ``method`` (``gradcam++-paper`` is always built in:
    pytorch-grad-cam has no implementation of the paper's equations)."""
    from . import pgc

    backend = (backend or "auto").lower()
    if backend not in CAM_BACKENDS:
        raise ExplainError(f"unknown CAM backend {backend!r}; choose one of {', '.join(CAM_BACKENDS)}")
    if method is not None and method not in pgc.PGC_CLASSES and method not in ENSEMBLES:
        return "builtin"
    if backend == "builtin":
        return "builtin"
    if pgc.available():
        return "pytorch-grad-cam"
    if backend == "pytorch-grad-cam":
        raise ExplainError("the pytorch-grad-cam backend is not installed: run scripts/install.sh, or"
                           " `pip install 'grad-cam>=1.5.7'` (a dependency of napari-cervseg), or use backend='builtin'")
    return "builtin"


def cam_maps_with(model: CellClassifier, x: torch.Tensor, layer: str, method: str, target: int | None,
                  backend: str):
    """CAM maps (N, h, w) from the chosen backend (pytorch-grad-cam's are at the input size and
    min-max scaled, the built-in ones at the layer's resolution), probabilities, class indices."""
    from . import pgc

    if backend != "pytorch-grad-cam":
        if method not in pgc.PGC_CLASSES and method not in ENSEMBLES:
            return cam_maps(model.net, x, layer, method, target)
        # the same post-processing as pytorch-grad-cam, so both backends give the same heatmap
        size = tuple(x.shape[-2:])
        if method not in ENSEMBLES:
            maps, probs, idx = cam_maps(model.net, x, layer, method, target)
            return scale_like_pgc(maps, size), probs, idx
        act, grads, probs, idx = _activations_and_gradients(model.net, x, layer, target)
        members = [scale_like_pgc(_cam_from(model.net, x, act, grads, idx, m), size) for m in ENSEMBLE_MEMBERS]
        return _combine(members, method), probs, idx

    module = _module(model.net, layer)
    if method not in ENSEMBLES:
        return pgc.cam_maps(model.net, x, module, method, target)
    members = []
    for member in ENSEMBLE_MEMBERS:
        maps, probs, idx = pgc.cam_maps(model.net, x, module, member, target)
        members.append(maps)
    return _combine(members, method), probs, idx


def _combine(members: list, method: str) -> torch.Tensor:
    """The ensemble's pixel-wise median (the authors' EnsembleCAM) or mean of max-normalised maps."""
    stack = torch.stack([_per_map_max_normalise(m) for m in members])
    return stack.median(0).values if ENSEMBLES[method] == "median" else stack.mean(0)


def scale_like_pgc(maps: torch.Tensor, size) -> torch.Tensor:
    """pytorch-grad-cam's post-processing of one layer's maps: ReLU, ``scale_cam_image`` (subtract
    the minimum, divide by 1e-7 + maximum, resize bilinearly to ``size`` = (H, W) of the input),
    then once more the min-max scaling of ``aggregate_multi_layers``."""
    def minmax(m):
        m = m - m.min()
        return m / (1e-7 + m.max())

    out = [minmax(cv2.resize(minmax(m), (int(size[1]), int(size[0]))))
           for m in F.relu(maps).detach().cpu().numpy().astype(np.float32)]
    return torch.from_numpy(np.stack(out))


def cam_maps(net: nn.Module, x: torch.Tensor, layer: str, method: str, target: int | None = None):
    """CAM maps (N, h, w) at the layer's resolution, ReLU'd (not yet max-normalised), and the
    probabilities and explained class indices. ``ensemble`` returns the pixel-wise median of the
    max-normalised maps of :data:`ENSEMBLE_MEMBERS`."""
    act, grads, probs, idx = _activations_and_gradients(net, x, layer, target)
    return _cam_from(net, x, act, grads, idx, method), probs, idx


def _cam_from(net, x, act, grads, idx, method):
    if method in ENSEMBLES:
        return _combine([_cam_from(net, x, act, grads, idx, m) for m in ENSEMBLE_MEMBERS], method)
    if method == "layercam":  # Jiang et al. 2021: element-wise positive-gradient weighting
        return F.relu((F.relu(grads) * act).sum(1))
    if method == "eigencam":  # class-agnostic by construction
        return F.relu(_eigen_maps(act))
    weights = _score_weights(net, x, act, idx) if method == "scorecam" else cam_weights(act, grads, method)
    return F.relu((weights[:, :, None, None] * act).sum(1))  # eq. 5 and the ReLU of eq. 6
