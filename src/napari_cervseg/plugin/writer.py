"""napari writer: a labels layer as a uint8 PNG (0 background, 1 cytoplasm, 2 nucleus)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.images import write_png_atomic


def write_labels(path: str, data, meta: dict) -> list[str]:
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"labels layer {meta.get('name', '')!r} has shape {arr.shape}; only 2D labels save as PNG")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("labels values must lie in 0-255 to be saved as a uint8 PNG")
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_suffix(".png")
    # the user chose this path in napari's save dialog (which asks before replacing a file)
    write_png_atomic(target, arr.astype(np.uint8), replace_foreign=True)
    return [str(target)]
