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


def get_slide_reader(path):
    """napari reader for whole slides: a pyramidal / tiled TIFF or OME-TIFF (SVS, NDPI, ...) opens
    as a lazy multiscale image; any other file is left to other readers (None)."""
    from ..io.slides import is_slide_file

    if isinstance(path, list) or not is_slide_file(path):
        return None
    return read_slide


def read_slide(path):
    from ..io.slides import open_slide

    slide = open_slide(path)  # kept open by the layer's dask arrays for as long as they live
    levels = slide.dask_levels()
    rgb = levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4)
    return [(levels, {"name": Path(str(path)).name, "multiscale": True, "rgb": rgb,
                      "metadata": {"cervseg_slide": str(Path(str(path)).resolve()), "mpp": slide.mpp}}, "image")]
