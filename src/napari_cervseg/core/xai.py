"""Explanations: the Grad-CAM family (pytorch-grad-cam, or our own hooks on a named layer) and LRP (zennit).

The CAM family runs through pytorch-grad-cam when it is installed (``cam_backend="auto"``; see
:mod:`.xai_pgc`), else through the built-in implementations below, which compute the same
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
import torch.nn.functional as F
from torch import nn

from .imageio import to_rgb_uint8
from .models import CellClassifier, ModelError, load_model
from .preprocess import input_bounds, preprocess

CAM_METHODS = ("gradcam++", "gradcam++-paper", "gradcam", "scorecam", "layercam", "eigencam", "ensemble",
               "ensemble-mean")
#: pixel-wise combination of the members' max-normalised maps, per ensemble method
ENSEMBLES = {"ensemble": "median", "ensemble-mean": "mean"}
#: the members of the ensemble (the authors' EnsembleCAM: pixel-wise median of these maps)
ENSEMBLE_MEMBERS = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam")
LRP_METHODS = ("lrp-ruleset1", "lrp-ruleset2")
METHODS = CAM_METHODS + LRP_METHODS
DEFAULT_METHOD = "gradcam++"


class ExplainError(ValueError):
    """An explanation request that cannot be met (unknown method, layer, or unsupported model)."""


@dataclass
class Explanation:
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


def _check_method(method: str) -> str:
    method = str(method).lower()
    if method not in METHODS:
        raise ExplainError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    return method


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


#: where the CAM family comes from: pytorch-grad-cam when installed ("auto"), or our own hooks
CAM_BACKENDS = ("auto", "pytorch-grad-cam", "builtin")


def resolve_cam_backend(backend: str | None = "auto", method: str | None = None) -> str:
    """"pytorch-grad-cam" or "builtin" for ``method`` (``gradcam++-paper`` is always built in:
    pytorch-grad-cam has no implementation of the paper's equations)."""
    from . import xai_pgc

    backend = (backend or "auto").lower()
    if backend not in CAM_BACKENDS:
        raise ExplainError(f"unknown CAM backend {backend!r}; choose one of {', '.join(CAM_BACKENDS)}")
    if method is not None and method not in xai_pgc.PGC_CLASSES and method not in ENSEMBLES:
        return "builtin"
    if backend == "builtin":
        return "builtin"
    if xai_pgc.available():
        return "pytorch-grad-cam"
    if backend == "pytorch-grad-cam":
        raise ExplainError("the pytorch-grad-cam backend is not installed: run scripts/install.sh, or"
                           " `pip install 'grad-cam>=1.5.7'` (a dependency of napari-cervseg), or use backend='builtin'")
    return "builtin"


def cam_maps_with(model: CellClassifier, x: torch.Tensor, layer: str, method: str, target: int | None,
                  backend: str):
    """CAM maps (N, h, w) from the chosen backend (pytorch-grad-cam's are at the input size and
    min-max scaled, the built-in ones at the layer's resolution), probabilities, class indices."""
    from . import xai_pgc

    if backend != "pytorch-grad-cam":
        if method not in xai_pgc.PGC_CLASSES and method not in ENSEMBLES:
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
        return xai_pgc.cam_maps(model.net, x, module, method, target)
    members = []
    for member in ENSEMBLE_MEMBERS:
        maps, probs, idx = xai_pgc.cam_maps(model.net, x, module, member, target)
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


# --------------------------------------------------------------------------------------------
# LRP


def max_pool_as_avg_pool_hook():
    """A zennit hook redistributing relevance through a max-pool as if it were an average pool.

    The paper replaces max-pooling by average pooling for LRP (Table 2): relevance then flows to
    every input of a window in proportion to its activation instead of only to the winner.
    (Built in a function so zennit is imported only when LRP is used.)
    """
    from zennit.core import Hook, stabilize

    class MaxPoolAsAvgPool(Hook):
        def forward(self, module, input, output):  # noqa: A002 - zennit's Hook signature
            self.stored_tensors["input"] = input

        def backward(self, module, grad_input, grad_output):
            x = self.stored_tensors["input"][0].detach().clone().requires_grad_()
            with torch.enable_grad():
                z = F.avg_pool2d(x, module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode)
                (g,) = torch.autograd.grad(z, x, grad_outputs=grad_output[0] / stabilize(z))
            return (x.detach() * g,)

    return MaxPoolAsAvgPool()


def lrp_composite(model: CellClassifier, ruleset: str, input_shape, gamma: float = 0.25,
                  epsilon: float = 0.25):
    """A zennit composite for the paper's rule sets (Table 2), mapped onto any plain conv stack.

    Ruleset1: first conv z^B (box = normalised input range); convolutions of the lower ~60 % of the
    conv blocks LRP-gamma; the upper blocks LRP-epsilon; dense layers LRP-0.
    Ruleset2: first conv z^B; every other layer LRP-gamma.
    BatchNorm is merged into the preceding convolution by zennit's canonizer; max-pools are
    treated as average pools; average pools use zennit's Norm rule; ReLU passes relevance.
    """
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.core import Composite
    from zennit.rules import Epsilon, Gamma, Norm, ZBox

    net = model.net
    conv_names = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not conv_names:
        raise ExplainError("LRP needs a convolutional network")
    # group convolutions by their top-level block (prefix up to the last dotted component)
    blocks = []
    for n in conv_names:
        b = n.rsplit(".", 1)[0]
        if b not in blocks:
            blocks.append(b)
    n_gamma_blocks = int(np.ceil(0.6 * len(blocks)))
    low, high = input_bounds(model.preprocess)
    device = model.device
    low, high = low.to(device), high.to(device)
    first = conv_names[0]

    def rule_for(name, module):
        if name == first:
            return ZBox(low=low.expand(*input_shape), high=high.expand(*input_shape))
        if isinstance(module, nn.Conv2d):
            block_idx = blocks.index(name.rsplit(".", 1)[0])
            if ruleset == "lrp-ruleset1" and block_idx >= n_gamma_blocks:
                return Epsilon(epsilon=epsilon)
            return Gamma(gamma=gamma)
        if isinstance(module, nn.Linear):
            return Epsilon(epsilon=1e-6) if ruleset == "lrp-ruleset1" else Gamma(gamma=gamma)
        if isinstance(module, nn.MaxPool2d):
            return max_pool_as_avg_pool_hook()
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return Norm()
        return None

    def module_map(ctx, name, module):
        return rule_for(name, module)

    return Composite(module_map=module_map, canonizers=[SequentialMergeBatchNorm()])


def lrp_relevance(model: CellClassifier, x: torch.Tensor, ruleset: str, target: int | None = None):
    """Per-pixel relevance (N, S, S) summed over colour channels, and class probabilities."""
    from zennit.attribution import Gradient

    if not model.lrp_applicable:
        raise ExplainError(
            f"LRP is not available for the {model.name!r} model (it has layers without LRP rules);"
            " use a CAM method such as 'gradcam++'"
        )
    net = model.net
    with torch.no_grad():
        probs = torch.softmax(net(x), 1)
    idx = probs.argmax(1) if target is None else torch.full((x.shape[0],), target, device=x.device)
    composite = lrp_composite(model, ruleset, tuple(x.shape))
    n_classes = probs.shape[1]
    onehot = torch.eye(n_classes, device=x.device)[idx]
    # start from the target logit itself (not 1) so that conserving rules sum to the logit
    with Gradient(model=net, composite=composite) as attributor:
        _, attribution = attributor(x.detach(), lambda out: out * onehot)
    return attribution.sum(1).detach(), probs, idx


# --------------------------------------------------------------------------------------------
# public entry point


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
    model : "default", a path, or a loaded :class:`CellClassifier`
    image : 2D grey or RGB(A) array
    method : one of :data:`METHODS` (``gradcam++`` by default)
    target : class to explain: ``None`` for the predicted class, or "abnormal" / "normal" / index
    layer : CAM layer name (default: the model card's ``cam_layer``)
    cam_backend : "auto" (pytorch-grad-cam when installed, else built in), "pytorch-grad-cam" or
        "builtin"; the one used is in ``extras["backend"]``
    """
    method = _check_method(method)
    model = load_model(model, device=device)
    backend = resolve_cam_backend(cam_backend, method) if method in CAM_METHODS else "zennit"
    rgb, _ = to_rgb_uint8(image)
    h, w = rgb.shape[:2]
    t0 = time.perf_counter()
    x = preprocess(rgb, model.preprocess, model.device)
    t_pre = time.perf_counter()
    target_idx = None if target is None else model.class_index(target)
    relevance = None
    if method in CAM_METHODS:
        layer = layer or model.cam_layer
        with model.lock:
            cam, probs, idx = cam_maps_with(model, x, layer, method, target_idx, backend)
        heat = _to_image_size(cam[0].cpu().numpy(), h, w)
    else:
        with model.lock:
            rel, probs, idx = lrp_relevance(model, x, method, target_idx)
        relevance = rel[0].cpu().numpy()
        heat = _to_image_size(relevance, h, w)
        layer = None
    heat = normalise_heatmap(heat)
    t_end = time.perf_counter()
    probs_np = probs[0].cpu().numpy()
    names = model.class_names
    return Explanation(
        heatmap=heat,
        method=method,
        target_class=names[int(idx[0])],
        predicted_class=names[int(probs_np.argmax())],
        probabilities={n: float(p) for n, p in zip(names, probs_np, strict=False)},
        relevance=relevance,
        layer=layer,
        seconds=t_end - t0,
        extras={"timings": {"preprocess": t_pre - t0, "forward_backward": t_end - t_pre}, "backend": backend},
    )


def explain_batch(model, images, method: str = DEFAULT_METHOD, target=None, layer: str | None = None,
                  device=None, cam_backend: str = "auto") -> list[Explanation]:
    """Explain several cells in one forward/backward pass (images may differ in size).

    Same result per image as :func:`explain` (each heatmap at its own image's size); faster on a
    GPU or for many small cells, since the network runs once on the stacked batch.
    """
    method = _check_method(method)
    model = load_model(model, device=device)
    backend = resolve_cam_backend(cam_backend, method) if method in CAM_METHODS else "zennit"
    rgbs = [to_rgb_uint8(im, name=f"image {i}")[0] for i, im in enumerate(images)]
    if not rgbs:
        return []
    t0 = time.perf_counter()
    x = torch.cat([preprocess(rgb, model.preprocess, model.device) for rgb in rgbs])
    target_idx = None if target is None else model.class_index(target)
    relevance = None
    if method in CAM_METHODS:
        layer = layer or model.cam_layer
        with model.lock:
            maps, probs, idx = cam_maps_with(model, x, layer, method, target_idx, backend)
    else:
        with model.lock:
            maps, probs, idx = lrp_relevance(model, x, method, target_idx)
        relevance = maps.cpu().numpy()
        layer = None
    seconds = (time.perf_counter() - t0) / len(rgbs)
    maps_np, probs_np, names = maps.detach().cpu().numpy(), probs.cpu().numpy(), model.class_names
    out = []
    for i, rgb in enumerate(rgbs):
        heat = normalise_heatmap(_to_image_size(maps_np[i], *rgb.shape[:2]))
        out.append(Explanation(
            heatmap=heat, method=method, target_class=names[int(idx[i])],
            predicted_class=names[int(probs_np[i].argmax())],
            probabilities={n: float(p) for n, p in zip(names, probs_np[i], strict=False)},
            relevance=None if relevance is None else relevance[i], layer=layer, seconds=seconds,
            extras={"backend": backend}))
    return out


@torch.no_grad()
def classify(model, image, device=None, operating_point=None) -> tuple[str, float, dict]:
    """Predicted class name, its probability, and all class probabilities for one image.

    ``operating_point``: None (the most probable class), ``"screening"`` (the model card's
    threshold on p(abnormal), chosen on the validation split for a high abnormal recall) or a
    number (call the cell abnormal when p(abnormal) >= it).
    """
    model = load_model(model, device=device)
    rgb, _ = to_rgb_uint8(image)
    x = preprocess(rgb, model.preprocess, model.device)
    with model.lock:
        probs = torch.softmax(model.net(x), 1)[0].cpu().numpy()
    names = model.class_names
    best = decide(model, probs, operating_point)
    return names[best], float(probs[best]), {n: float(p) for n, p in zip(names, probs, strict=False)}


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
