"""Image validation, conversion and file reading shared by API, CLI and widgets.

Every entry point turns what the user gave into one canonical form: an RGB ``uint8`` array of
shape (H, W, 3). What cannot be turned into that raises :class:`ImageError`, whose message names
what is wrong and what would work.
"""

from __future__ import annotations

import contextlib
import math
import os
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

    - 2D (H, W) grey is replicated to three channels; (H, W, 1) likewise, and (H, W, 2) grey +
      alpha (the alpha channel is dropped).
    - (H, W, 3) is RGB; (H, W, 4) is RGBA and the alpha channel is dropped.
    - uint8 is used as is; so are other integer and float pixels within 0-255 (a 16-bit or float
      copy of an 8-bit image gives the same colours), and float pixels within [0, 1] are read as
      0-255; any other range is stretched from its finite minimum to maximum onto 0-255 (a
      constant image maps to 0).
    - NaN / inf pixels are replaced by the finite minimum and reported in ``warnings``;
      an image with no finite pixel is refused.
    - Empty images, 3D stacks and other shapes are refused with :class:`ImageError`.
    """
    warnings: list[str] = []
    if image is None:
        raise ImageError(f"{name}: got None; pass a 2D grey or RGB(A) array or an image file path")
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError) as exc:  # ragged nested lists, ...
        raise ImageError(f"{name}: cannot be made into an array ({exc}); pass a 2D grey or RGB(A) array") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype.kind not in "uif":
        raise ImageError(
            f"{name}: dtype {arr.dtype} is not a numeric image; use uint8, uint16 or float pixels"
        )
    if arr.size == 0:
        raise ImageError(f"{name}: image is empty (shape {arr.shape}); pass a non-empty 2D or RGB image")
    if arr.ndim == 3 and arr.shape[-1] in (1, 2):  # grey, grey + alpha (the alpha is dropped)
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
        elif arr.ndim == 3 and arr.shape[-1] <= 16 and arr.shape[0] > 16:
            hint = (f" It looks like {arr.shape[-1]} channels per pixel: pass one channel (image[..., c])"
                    " or an RGB composite of three.")
        elif arr.ndim >= 3:
            hint = (
                " It looks like a stack: pass one frame (image[i]) or segment every frame with"
                " `cervseg segment` on the stack file."
            )
        raise ImageError(
            f"{name}: shape {arr.shape} is not a single 2D image; expected (H, W) grey, (H, W, 2)"
            f" grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA.{hint}"
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
    # values an 8-bit original would have are kept as they are (a 16-bit or float copy of an 8-bit
    # image must give the same colours, so the same verdicts); only other ranges are stretched
    if lo >= 0 and hi <= 1.0 and arr.dtype.kind == "f":
        work = work * 255.0
        warnings.append(f"{name}: {arr.dtype} pixels in [0, 1] read as 0-255 (x 255)")
    elif lo >= 0 and hi <= 255:
        warnings.append(f"{name}: {arr.dtype} pixels within 0-255 used as 8-bit values")
    else:
        work = (work - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(work)
        warnings.append(
            f"{name}: {arr.dtype} pixels stretched from [{lo:g}, {hi:g}] to uint8 [0, 255] (the stretch changes"
            " the colours the classifier sees: give 8-bit pixels where you have them)"
        )
    return np.ascontiguousarray(np.clip(np.rint(work), 0, 255).astype(np.uint8)), warnings


#: largest image (height x width) segmented as one cell; bigger ones are a field of cells or a
#: slide: segment a region of it instead (``roi=``, napari rectangles, ``cervseg segment --roi``)
MAX_PIXELS = 4096 * 4096

TIFF_SUFFIXES = (".tif", ".tiff")


def _mpx(pixels: int) -> str:
    mpx = pixels / 1e6
    return f"{mpx:.0f} Mpx" if mpx >= 100 else f"{mpx:.2g} Mpx" if mpx < 1 else f"{mpx:.1f} Mpx"


def huge_image_message(name: str, height: int, width: int, max_pixels: int) -> str:
    return (
        f"{name}: {height} x {width} px ({_mpx(height * width)}) is more than one cell image"
        f" (limit {_mpx(max_pixels)}). Segment a region of it: crop it"
        " (image[y:y+h, x:x+w]), draw rectangles around cells on a Shapes layer in napari, or"
        " `cervseg segment FILE --roi X,Y,W,H`; or raise the limit (max_pixels= / --max-pixels)"
        " if it really is one cell"
    )


def check_size(shape, name: str = "image", max_pixels: int | None = MAX_PIXELS) -> None:
    """Refuse an image larger than ``max_pixels`` (height x width) with the region-of-interest routes."""
    import numbers

    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Real)
                                   or not max_pixels >= 0):
        raise ImageError(f"max_pixels must be a number of pixels >= 0 (0 or None: no limit); got {max_pixels!r}")
    if max_pixels and len(shape) >= 2 and int(shape[0]) * int(shape[1]) > max_pixels:
        raise ImageError(huge_image_message(name, int(shape[0]), int(shape[1]), max_pixels))


def check_pixel_size(pixel_size) -> float | None:
    """``pixel_size`` (µm per pixel) as a float, None for none; anything but a finite number above
    0 is refused with ValueError."""
    import numbers

    if pixel_size is None:
        return None
    if (isinstance(pixel_size, (bool, np.bool_)) or not isinstance(pixel_size, numbers.Real)
            or not math.isfinite(pixel_size) or not pixel_size > 0):
        raise ValueError(f"pixel_size must be a finite number of µm per pixel above 0 (e.g. 0.25), got"
                         f" {str(pixel_size)[:40]!r}")
    return float(pixel_size)


def file_kind(mode: int) -> str | None:
    """What a ``st_mode`` that is not a regular file is ("folder", "FIFO (named pipe)" ...), else None."""
    import stat

    for test, kind in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "special file"


def _check_file(path: Path) -> None:
    """Refuse, by ``stat`` and before anything opens it, a path that is not a regular non-empty file
    (opening a FIFO or a device would block or read forever)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    kind = file_kind(st.st_mode)
    if kind == "folder":
        raise ImageError(f"{path}: is a folder; pass image files (or use `cervseg segment DIR`)")
    if kind is not None:
        raise ImageError(f"{path}: is a {kind}, not a regular file; pass an image file")
    if st.st_size == 0:
        raise ImageError(f"{path}: file is empty (0 bytes)")


def _unreadable(path: Path, exc: Exception) -> ImageError:
    return ImageError(
        f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}); "
        "expected a PNG, JPEG, BMP or TIFF file"
    )


def image_info(path) -> tuple[int, tuple[int, int]]:
    """``(n_frames, (height, width))`` of an image file from its header, without decoding pixels.

    A multi-page TIFF has one frame per page; every other file has one frame.
    """
    path = Path(path)
    _check_file(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                pages = tif.pages
                first = pages.first if hasattr(pages, "first") else pages[0]
                kind = _page_kind(first, path)
                shape = first.shape
                if kind == "volume":
                    if len(pages) == 1:  # one page holding a (frames, H, W) volume
                        return int(shape[0]), (int(shape[1]), int(shape[2]))
                    raise ImageError(f"{path}: pages holding volumes (depth {shape[0]}) are not supported;"
                                     " save one 2D image per page")
                if kind == "planar":  # channel-first RGB(A)
                    shape = shape[1:]
                return len(pages), (int(shape[0]), int(shape[1]))
        from PIL import Image

        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # reading the header only; the size check is ours
        try:
            with Image.open(path) as im:
                width, height = im.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        return 1, (int(height), int(width))
    except ImageError:
        raise
    except Exception as exc:  # the readers raise many unrelated types for a bad file
        raise _unreadable(path, exc) from exc


def _page_kind(page, path) -> str:
    """How a TIFF page's array is laid out: ``"plain"`` ((H, W) or (H, W, S) with S = 2, 3, 4),
    ``"planar"`` ((S, H, W): channel-first grey + alpha or RGB(A)), or ``"volume"`` ((D, H, W): a
    stack of grey frames in one page). Other sample counts are refused by name."""
    spp = int(getattr(page, "samplesperpixel", 1) or 1)
    if spp not in (1, 2, 3, 4):
        raise ImageError(
            f"{path}: {spp} channels per pixel; expected grey, grey + alpha, RGB or RGBA. Save one"
            " channel, or an RGB composite of three, as its own image")
    if spp > 1 and int(getattr(page, "planarconfig", 1)) == 2:
        return "planar"
    if spp == 1 and page.ndim == 3:
        return "volume"
    return "plain"


#: a region of a PNG / JPEG / BMP is cut from the whole decoded image: such a file is refused if it
#: is larger than this (or ``max_pixels``, if larger), so a small file that declares a huge size
#: (a decompression bomb) is never decoded
ROI_DECODE_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit

#: Pillow modes read through a conversion to RGB (their raw channels are not RGB: CMYK JPEGs, ...)
_CONVERT_MODES = {"CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB",
                  "RGBa": "RGBA", "P": None, "PA": "RGBA", "1": "L", "La": "LA"}


def _pil_convert(im):
    target = _CONVERT_MODES[im.mode]
    if target is None:  # palette: RGBA when it has transparency
        target = "RGBA" if "transparency" in im.info else "RGB"
    return im.convert(target)


def parse_roi(text) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` (or a 4-sequence) as a region of interest: column, row, width, height in px."""
    try:
        parts = [int(round(float(v))) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        parts = []
    if len(parts) != 4 or parts[0] < 0 or parts[1] < 0 or parts[2] < 1 or parts[3] < 1:
        raise ImageError(f"region of interest {text!r}: expected X,Y,W,H with X, Y >= 0 and W, H >= 1"
                         " (pixels; X is the column of the left edge, Y the row of the top edge)")
    return parts[0], parts[1], parts[2], parts[3]


def read_image(path, frame: int | None = None, roi=None, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, TIFF, ...) as an array, raising ImageError if unreadable.

    ``frame``: the page of a multi-page TIFF (default: the whole file).
    ``roi``: ``(x, y, w, h)`` or ``"X,Y,W,H"``: read only that region (clipped to the image). An
    uncompressed TIFF page is memory-mapped so only the region is read; other files are decoded
    whole and cropped.
    ``max_pixels``: refuse, from the file header and before decoding, an image (or region) larger
    than this, with a message that names the region-of-interest routes.
    """
    path = Path(path)
    _check_file(path)
    box = parse_roi(roi) if roi is not None else None
    suffix = path.suffix.lower()
    if max_pixels:
        _, (height, width) = image_info(path)
        if box is not None:
            if not _reads_in_parts(path):
                limit = max(max_pixels, ROI_DECODE_MAX_PIXELS)
                if height * width > limit:
                    raise ImageError(
                        f"{path}: {height} x {width} px ({_mpx(height * width)}): a region of this file can"
                        f" only be cut from the whole decoded image, and that is over the limit"
                        f" ({_mpx(limit)}). Save it as an uncompressed TIFF (read region by region), crop"
                        " it with another tool, or raise --max-pixels / max_pixels= if it is safe")
            x, y, w, h = box
            height, width = max(0, min(y + h, height) - y), max(0, min(x + w, width) - x)
        check_size((height, width), str(path), max_pixels)
    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path, frame, box)
        from PIL import Image

        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # the size checks are ours (above)
        try:
            with Image.open(path) as im:
                mode = im.mode
                if box is not None:
                    x, y, w, h = box
                    _inside(box, (im.size[1], im.size[0]), path)
                    region = im.crop((x, y, min(x + w, im.size[0]), min(y + h, im.size[1])))
                    return np.asarray(_pil_convert(region) if mode in _CONVERT_MODES else region)
                if mode in _CONVERT_MODES:  # e.g. CMYK: its raw channels would be read as RGBA
                    return np.asarray(_pil_convert(im))
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        import skimage.io

        return skimage.io.imread(str(path))
    except ImageError:
        raise
    except Exception as exc:  # the readers raise many unrelated types for a bad file
        raise _unreadable(path, exc) from exc


def _reads_in_parts(path: Path) -> bool:
    """True for an uncompressed TIFF page (memory-mapped: a region reads only its rows)."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            return bool(tif.pages[0].is_memmappable)
    except Exception:  # noqa: BLE001 - unreadable: reported when read
        return False


def _read_tiff(path: Path, frame, box):
    """A TIFF page (or the whole file when ``frame`` is None and it has several pages) as (H, W),
    (H, W, S) or a stack; channel-first pages come back channel-last."""
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        pages = tif.pages
        n_pages = len(pages)
        first = pages.first if hasattr(pages, "first") else pages[0]
        kind = _page_kind(first, path)
        if n_pages > 1 and frame is None and box is None:
            data = tif.asarray()  # the whole stack: refused as such by to_rgb_uint8, by name
            return np.moveaxis(data, 1, -1) if kind == "planar" else data
        index = 0 if n_pages == 1 else (frame or 0)
        page = pages[index]
        kind = _page_kind(page, path)
        if box is not None and page.is_memmappable:
            # an uncompressed page maps into memory: only the region's rows are read from disk
            data = tifffile.memmap(str(path), page=index, mode="r")
        else:
            data = page.asarray()
        if kind == "planar":
            data = np.moveaxis(data, 0, -1)
        elif kind == "volume" and (frame is not None or box is not None):
            data = data[frame or 0]
        if box is not None:
            _inside(box, data.shape, path)
            x, y, w, h = box
            data = data[y:y + h, x:x + w]
        return np.array(data)


def _inside(box, shape, path) -> None:
    x, y, _, _ = box
    if y >= shape[0] or x >= shape[1]:
        raise ImageError(f"{path}: region of interest X,Y,W,H = {','.join(map(str, box))} starts outside"
                         f" the image ({shape[0]} x {shape[1]} px, rows x columns)")


#: a PNG text chunk that marks a file as written by this package (what a run may overwrite)
OWN_MARK = b"tEXt" + b"Software\x00napari-cervseg"


class OutputError(OSError):
    """An output that could not be written completely (full disk, quota, I/O error, a file that
    is not ours in the way); the message names the file and what to do."""


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of ``arr`` (RGB or 2D) with the :data:`OWN_MARK` text chunk after the header."""
    import cv2

    work = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    ok, buf = cv2.imencode(".png", work)
    if not ok:
        raise OutputError(f"could not encode a {arr.shape} {arr.dtype} array as PNG")
    data = buf.tobytes()
    mark = _png_chunk(b"tEXt", b"Software\x00napari-cervseg")
    return data[:33] + mark + data[33:]  # 8-byte signature + 25-byte IHDR chunk come first


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to disk (a full disk raises here or is caught by
    the check that follows)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def is_own_output(path) -> bool:
    """True when ``path`` is a PNG this package wrote (it carries :data:`OWN_MARK`)."""
    try:
        with open(path, "rb") as fh:
            return OWN_MARK in fh.read(128)
    except OSError:
        return False


def _verify_png(tmp: Path, expected: np.ndarray, size: int) -> None:
    import cv2

    got_size = tmp.stat().st_size
    if got_size != size:
        raise OutputError(f"{got_size} of {size} bytes reached the disk")
    back = cv2.imread(str(tmp), cv2.IMREAD_UNCHANGED)
    if back is None:
        raise OutputError("the written file does not decode")
    if back.ndim == 3:
        back = cv2.cvtColor(back, cv2.COLOR_BGR2RGB)
    if back.shape != expected.shape or back.dtype != expected.dtype or not np.array_equal(back, expected):
        raise OutputError("the written file decodes to other pixels")


def write_png_atomic(path, array: np.ndarray, replace_foreign: bool = False) -> None:
    """Write ``array`` as PNG via a temporary file, checked, then renamed: no empty, truncated or
    damaged file is ever left under ``path`` (a full disk fails here with :class:`OutputError`).

    The temporary file is checked before the rename: its size is what was encoded and it decodes
    to the same pixels. An existing ``path`` that this package did not write (no
    :data:`OWN_MARK`) is not overwritten unless ``replace_foreign``.
    """
    path = Path(path)
    arr = np.ascontiguousarray(np.asarray(array))
    if path.exists() and not replace_foreign and not is_own_output(path):
        raise OutputError(f"{path}: exists and was not written by napari-cervseg; it is left alone."
                          " Move or rename it, or write to another folder (--out)")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{np.random.randint(1 << 30)}.png")
    try:
        data = _encode_png(arr)
        _write_bytes(tmp, data)
        _verify_png(tmp, arr, len(data))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror or str(exc) if not isinstance(exc, OutputError) else str(exc)
        raise OutputError(f"could not write {path}: {reason} (disk full? free space and run again;"
                          " nothing was left under that name)") from exc


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` via a checked temporary file and rename (see :func:`write_png_atomic`)."""
    path = Path(path)
    data = text.encode()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{np.random.randint(1 << 30)}")
    try:
        _write_bytes(tmp, data)
        if tmp.stat().st_size != len(data) or tmp.read_bytes() != data:
            raise OutputError(f"{tmp.stat().st_size} of {len(data)} bytes reached the disk")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror or str(exc) if not isinstance(exc, OutputError) else str(exc)
        raise OutputError(f"could not write {path}: {reason} (disk full? free space and run again)") from exc
