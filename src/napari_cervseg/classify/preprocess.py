"""The one preprocessing path used by training and inference (Sec. III-B of the paper).

resize -> median filter -> histogram equalisation -> normalisation. The settings live in a
:class:`PreprocessConfig` that is saved in every model card, so a model is always fed the way it
was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

EQUALISE_CHOICES = ("luminance", "per-channel", "none")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB uint8 cell image becomes a model input tensor.

    The paper leaves the median kernel and the equalisation mode open: we use a 3x3 median and
    equalise the luminance (Y of YCrCb) so the stain colours, which carry information, keep
    their hue.
    """

    input_size: int = 128
    median_ksize: int = 3
    equalise: str = "luminance"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self):
        if self.equalise not in EQUALISE_CHOICES:
            raise ValueError(f"equalise must be one of {EQUALISE_CHOICES}, got {self.equalise!r}")
        if self.median_ksize not in (0, 1) and self.median_ksize % 2 == 0:
            raise ValueError("median_ksize must be odd (or 0/1 to disable)")
        if self.input_size < 8:
            raise ValueError("input_size must be at least 8")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(x) for x in known[key])
        return cls(**known)


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (area interpolation when shrinking, cubic when enlarging)."""
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interp)


def enhance(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Median filter and histogram equalisation of an RGB uint8 image (any size)."""
    out = rgb
    if config.median_ksize > 1:
        out = cv2.medianBlur(out, config.median_ksize)
    if config.equalise == "luminance":
        ycc = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)
        ycc[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[..., 0]))
        out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    elif config.equalise == "per-channel":
        out = np.stack([cv2.equalizeHist(np.ascontiguousarray(out[..., c])) for c in range(3)], -1)
    return out


def normalise(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """uint8 HWC -> float32 CHW, scaled to [0, 1] then standardised with the config's mean/std."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_array(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, S, S) model input."""
    return normalise(enhance(resize(rgb, config.input_size), config), config)


def preprocess(rgb: np.ndarray, config: PreprocessConfig, device=None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> a (1, 3, S, S) tensor on ``device``."""
    return torch.from_numpy(preprocess_array(rgb, config))[None].to(device or "cpu")


def input_bounds(config: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel lowest and highest normalised input values: the z^B rule's box (l, h)."""
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return (0.0 - mean) / std, (1.0 - mean) / std


__all__ = [
    "PreprocessConfig",
    "resize",
    "enhance",
    "normalise",
    "preprocess",
    "preprocess_array",
    "input_bounds",
]
