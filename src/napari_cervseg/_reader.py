"""napari reader for cell label masks (0 background, 1 cytoplasm, 2 nucleus)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.imageio import ImageError, read_image

#: napari colours: cytoplasm orange, nucleus blue (fixed, clearly different)
LABEL_COLORS = {0: "transparent", 1: "#ff961e", 2: "#285aff", None: "transparent"}


def get_reader(path):
    if isinstance(path, list):
        return None
    name = str(path).lower()
    if not (name.endswith(("_labels.png", "_labels.tif", "_labels.tiff"))):
        return None
    return read_labels


def read_labels(path):
    arr = read_image(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ImageError(f"{path}: expected a 2D label mask, got shape {arr.shape}")
    labels = arr.astype(np.uint8)
    meta = {"name": Path(path).stem, "colormap": LABEL_COLORS}
    return [(labels, meta, "labels")]
