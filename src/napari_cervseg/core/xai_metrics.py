"""Measuring explanations: heatmap entropy (the paper's Table 8) and pixel flipping (AOPC)."""

from __future__ import annotations

import numpy as np
import torch

from .imageio import to_rgb_uint8
from .models import load_model
from .preprocess import preprocess


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
