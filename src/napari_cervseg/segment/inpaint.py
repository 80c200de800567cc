"""Nucleus removal by inpainting before the cytoplasm GrabCut (Algorithm 2).

OpenCV's Telea inpainting by default. LaMa when a local TorchScript ``big-lama.pt`` is given
(``lama_model=`` or the ``LAMA_MODEL`` environment variable): nothing is downloaded. The caller
learns which inpainter ran from the returned name.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

INPAINTERS = ("auto", "opencv", "lama", "none")


class InpaintError(ValueError):
    pass


def lama_path(lama_model=None) -> Path | None:
    """The LaMa TorchScript file to use: the argument, else $LAMA_MODEL, else None."""
    candidate = lama_model or os.environ.get("LAMA_MODEL")
    return Path(candidate).expanduser() if candidate else None


@lru_cache(maxsize=2)
def _load_lama(path: str, device: str):
    # TorchScript is a restricted program format (no pickled Python objects are executed)
    try:
        model = torch.jit.load(path, map_location=device)
    except Exception as exc:  # torch raises RuntimeError / ValueError variants for a bad file
        raise InpaintError(f"{path}: not a loadable TorchScript LaMa model ({exc})") from exc
    model.eval()
    return model


def inpaint_lama(image_rgb: np.ndarray, mask: np.ndarray, model_path, device="cpu") -> np.ndarray:
    """LaMa: image (1,3,H,W) and mask (1,1,H,W) in [0, 1], padded to a multiple of 8, cropped back."""
    model = _load_lama(str(model_path), str(device))
    h, w = mask.shape
    pad_h, pad_w = (-h) % 8, (-w) % 8
    img = np.pad(image_rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    msk = np.pad(mask.astype(np.float32), ((0, pad_h), (0, pad_w)), mode="constant")
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    m = torch.from_numpy(msk)[None, None].to(device)
    with torch.no_grad():
        out = model(x, m)
    out = out[0].permute(1, 2, 0).cpu().numpy()[:h, :w]
    out = np.clip(out * 255.0 if out.max() <= 1.5 else out, 0, 255).astype(np.uint8)
    # keep the original outside the mask: LaMa may alter it slightly
    return np.where(mask[..., None].astype(bool), out, image_rgb)


def inpaint(image_rgb: np.ndarray, mask: np.ndarray, method: str = "auto", lama_model=None,
            radius: int = 5, device="cpu") -> tuple[np.ndarray, str]:
    """Fill ``mask`` in ``image_rgb``; returns (image, name of the inpainter that ran).

    ``method``: "opencv" (Telea), "lama" (needs a model path; error if none), "auto" (LaMa when a
    model path is known, else OpenCV), "none" (no inpainting: returns the image unchanged).
    """
    if method not in INPAINTERS:
        raise InpaintError(f"unknown inpainter {method!r}; choose one of {', '.join(INPAINTERS)}")
    mask = np.asarray(mask, bool)
    if method == "none" or not mask.any():  # "none": keep the nucleus (the paper's Fig. 8 variant)
        return image_rgb.copy(), "none"
    path = lama_path(lama_model)
    if method == "lama" and path is None:
        raise InpaintError("inpainter 'lama' needs a local big-lama.pt: pass lama_model= or set LAMA_MODEL")
    if method in ("lama", "auto") and path is not None:
        if not path.exists():
            raise InpaintError(f"LaMa model {path} does not exist (from lama_model= or LAMA_MODEL)")
        return inpaint_lama(image_rgb, mask, path, device), "lama"
    out = cv2.inpaint(np.ascontiguousarray(image_rgb), mask.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return out, "opencv-telea"
