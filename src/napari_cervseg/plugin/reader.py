"""napari reader for cell label masks (0 background, 1 cytoplasm, 2 nucleus)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.images import ImageError, read_image
from .layers import label_colormap


def get_reader(path):
    if isinstance(path, list):
        return None
    p = Path(str(path))
    name = p.name.lower()
    herlev_mask = p.parent.name == "masks" and name.endswith(".png")  # Herlev layout: masks/<name>.png
    if not (name.endswith(("_labels.png", "_labels.tif", "_labels.tiff")) or herlev_mask):
        return None
    return read_labels


def read_labels(path):
    arr = read_image(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ImageError(f"{path}: expected a 2D label mask, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ImageError(f"{path}: label values outside 0-255; expected 0 background, 1 cytoplasm, 2 nucleus")
    labels = arr.astype(np.uint8)
    meta = {"name": Path(path).stem, "colormap": label_colormap()}
    return [(labels, meta, "labels")]
