"""Image validation, conversion and file reading shared by API, CLI and widgets.

Every entry point turns what the user gave into one canonical form: an RGB ``uint8`` array of
shape (H, W, 3). What cannot be turned into that raises :class:`ImageError`, whose message names
what is wrong and what would work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: smallest side the pipeline accepts (smaller images are up-sampled by the classifier anyway,
#: but there is nothing to segment in fewer pixels than this)
MIN_SIDE = 1


class ImageError(ValueError):
    """An image the pipeline cannot use; the message says why and what would work."""


def to_rgb_uint8(image, name: str = "image") -> tuple[np.ndarray, list[str]]:
    """Convert a 2D grey or RGB(A) image of any numeric dtype to RGB uint8.

    Returns ``(rgb, warnings)``. Rules (documented in the README, "Input images"):

    - 2D (H, W) grey is replicated to three channels; (H, W, 1) likewise.
    - (H, W, 3) is RGB; (H, W, 4) is RGBA and the alpha channel is dropped.
    - uint8 is used as is; other integer and float dtypes are stretched from their finite
      minimum to maximum onto 0-255 (a constant image maps to 0).
    - NaN / inf pixels are replaced by the finite minimum and reported in ``warnings``;
      an image with no finite pixel is refused.
    - Empty images, 3D stacks and other shapes are refused with :class:`ImageError`.
    """
    warnings: list[str] = []
    if image is None:
        raise ImageError(f"{name}: got None; pass a 2D grey or RGB(A) array or an image file path")
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype.kind not in "uif":
        raise ImageError(
            f"{name}: dtype {arr.dtype} is not a numeric image; use uint8, uint16 or float pixels"
        )
    if arr.size == 0:
        raise ImageError(f"{name}: image is empty (shape {arr.shape}); pass a non-empty 2D or RGB image")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
    else:
        hint = ""
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] > 4:
            hint = " If it is channel-first RGB, pass image.transpose(1, 2, 0)."
        elif arr.ndim >= 3:
            hint = (
                " It looks like a stack: pass one frame (image[i]) or segment every frame with"
                " `cervseg segment` on the stack file."
            )
        raise ImageError(
            f"{name}: shape {arr.shape} is not a single 2D image; expected (H, W) grey,"
            f" (H, W, 3) RGB or (H, W, 4) RGBA.{hint}"
        )
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{name}: image of shape {arr.shape} is too small")

    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr), warnings

    work = arr.astype(np.float64)
    finite = np.isfinite(work)
    if not finite.all():
        n_bad = int((~finite).sum())
        if n_bad == work.size:
            raise ImageError(f"{name}: every pixel is NaN or inf; nothing to segment")
        fill = work[finite].min()
        work = np.where(finite, work, fill)
        warnings.append(f"{name}: {n_bad} NaN/inf pixel values replaced by the image minimum {fill:g}")
    lo, hi = float(work.min()), float(work.max())
    if hi > lo:
        work = (work - lo) / (hi - lo) * 255.0
    else:
        work = np.zeros_like(work)
    if arr.dtype != np.uint8:
        warnings.append(
            f"{name}: {arr.dtype} pixels stretched from [{lo:g}, {hi:g}] to uint8 [0, 255]"
        )
    return np.ascontiguousarray(np.clip(np.rint(work), 0, 255).astype(np.uint8)), warnings


def read_image(path) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, TIFF, ...) as an array, raising ImageError if unreadable."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; pass image files (or use `cervseg segment DIR`)")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(str(path))
        import skimage.io

        return skimage.io.imread(str(path))
    except ImageError:
        raise
    except Exception as exc:  # the readers raise many unrelated types for a bad file
        raise ImageError(
            f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}); "
            "expected a PNG, JPEG, BMP or TIFF file"
        ) from exc


def write_png_atomic(path, array: np.ndarray) -> None:
    """Write ``array`` as PNG via a temporary file and rename, so no truncated file is left."""
    import cv2

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{np.random.randint(1 << 30)}.png")
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok = cv2.imwrite(str(tmp), arr)
    if not ok:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not write {path}")
    tmp.replace(path)
