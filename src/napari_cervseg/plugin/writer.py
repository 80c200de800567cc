"""napari writer: a labels layer as a PNG: uint8 (0 background, 1 cytoplasm, 2 nucleus, or up to
255 cells), uint16 for instance labels with more cells (a field's ``cells`` / ``nuclei``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.images import write_png_atomic


def write_labels(path: str, data, meta: dict) -> list[str]:
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"labels layer {meta.get('name', '')!r} has shape {arr.shape}; only 2D labels save as PNG")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"labels layer {meta.get('name', '')!r} holds values {int(arr.min())}..{int(arr.max())};"
                         " a PNG keeps 0-65535 (more cells than that: save the field in regions)")
    dtype = np.uint8 if not arr.size or arr.max() <= 255 else np.uint16
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_suffix(".png")
    # the user chose this path in napari's save dialog (which asks before replacing a file)
    write_png_atomic(target, arr.astype(dtype), replace_foreign=True)
    return [str(target)]
