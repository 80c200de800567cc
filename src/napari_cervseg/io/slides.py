"""Whole slides, read lazily: pyramidal / tiled TIFF and OME-TIFF through tifffile's zarr store
(SVS, NDPI and SCN are TIFF too), other vendor formats through OpenSlide when it is installed.

Nothing here reads a whole level into memory: `Slide.read` decodes the tiles a region touches,
`Slide.dask_levels` hands napari a lazy multiscale pyramid. Coordinates are level-0 pixels (y, x).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: files tifffile opens (vendor formats that are TIFF underneath included)
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".svs", ".ndpi", ".scn", ".bif")
#: vendor formats that need OpenSlide (`pip install openslide-python openslide-bin`)
OPENSLIDE_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")
#: a TIFF image larger than this (px) is a slide even without a pyramid
SLIDE_MIN_PIXELS = 10_000 * 10_000


class SlideError(ValueError):
    """A file that cannot be opened as a slide; the message names the file and what would work."""


@dataclass
class Slide:
    """An open slide. ``levels[0]`` is full resolution; each level is a lazily indexed array
    ``(H, W)`` or ``(H, W, C)``. Close it (or use ``with``) to release the file."""

    path: Path
    levels: list
    mpp: float | None = None
    _close: list = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """Level 0's (height, width) in pixels."""
        return tuple(int(v) for v in self.levels[0].shape[:2])

    @property
    def downsamples(self) -> list[float]:
        """How many level-0 pixels each level's pixel spans (1.0 for level 0)."""
        return [self.shape[0] / float(level.shape[0]) for level in self.levels]

    def read(self, y0: int, x0: int, y1: int, x1: int, level: int = 0) -> np.ndarray:
        """The region ``[y0:y1, x0:x1]`` of `level` (in that level's pixels, clipped to it)."""
        array = self.levels[level]
        h, w = array.shape[:2]
        y0, x0, y1, x1 = max(0, int(y0)), max(0, int(x0)), min(h, int(y1)), min(w, int(x1))
        if y1 <= y0 or x1 <= x0:
            raise SlideError(f"{self.path.name}: region {y0}:{y1}, {x0}:{x1} lies outside level {level}"
                             f" ({h} x {w} px)")
        try:
            return np.asarray(array[y0:y1, x0:x1])
        except Exception as exc:  # noqa: BLE001  (a codec's own error type: named for the user)
            raise SlideError(f"{self.path.name}: the image data of level {level} at rows {y0}:{y1}, columns"
                             f" {x0}:{x1} cannot be decoded ({type(exc).__name__}: {exc}); the file may be"
                             " truncated or damaged (was it copied completely?)") from exc

    def dask_levels(self) -> list:
        """The pyramid as dask arrays (napari's multiscale image layer takes this list)."""
        import dask.array as da

        return [level if isinstance(level, da.Array) else da.from_array(level, chunks=_chunks(level))
                for level in self.levels]

    def close(self) -> None:
        for close in self._close:
            close()
        self._close.clear()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(level) -> tuple:
    chunks = getattr(level, "chunks", None)
    if chunks and all(isinstance(c, int) for c in chunks):
        return tuple(chunks)
    return (1024, 1024) + tuple(level.shape[2:])


def is_slide_file(path) -> bool:
    """True for a file that should open as a slide (a pyramid, or one huge tiled TIFF image)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(OPENSLIDE_SUFFIXES):
        return True
    if not name.endswith(TIFF_SUFFIXES) or not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            h, w = series.shape[series.axes.index("Y")], series.shape[series.axes.index("X")]
            return len(series.levels) > 1 or (tif.pages[0].is_tiled and h * w >= SLIDE_MIN_PIXELS)
    except Exception:  # noqa: BLE001  (not a TIFF tifffile reads: not a slide; the image reader says why)
        return False


def open_slide(path) -> Slide:
    """Open `path` lazily as a slide.

    Parameters
    ----------
    path : path
        Pyramidal or tiled TIFF / OME-TIFF (and SVS, NDPI, SCN) through tifffile + zarr; MRXS and
        other OpenSlide formats through openslide-python when installed.

    Returns
    -------
    Slide
        ``levels`` (lazy arrays, level 0 first), ``shape``, ``mpp``, ``read(y0, x0, y1, x1,
        level)`` and ``dask_levels()`` for napari; close it, or use it in a ``with`` block.

    Raises
    ------
    SlideError
        Naming the file and what would work.
    """
    path = Path(path)
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir():
        raise SlideError(f"{path} is a folder; give a slide file (.ome.tif, .tif, .svs, .ndpi, ...)")
    name = path.name.lower()
    if name.endswith(OPENSLIDE_SUFFIXES):
        return _open_openslide(path)
    if not name.endswith(TIFF_SUFFIXES):
        raise SlideError(f"{path.name}: not a slide format read here; use a pyramidal TIFF / OME-TIFF"
                         f" ({', '.join(TIFF_SUFFIXES)}) or, with OpenSlide installed, {', '.join(OPENSLIDE_SUFFIXES)}")
    return _open_tiff(path)


def _open_tiff(path: Path) -> Slide:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise SlideError(f"{path.name} is not a TIFF that can be read ({exc}); was it copied completely?") from exc
    try:
        series = tif.series[0]
        axes = series.axes
        if not set("YX") <= set(axes) or any(a not in "YXS" and n > 1 for a, n in zip(axes, series.shape, strict=True)):
            raise SlideError(f"{path.name}: axes {axes} {series.shape}: a slide is one 2D image, grey or RGB"
                             " (YX or YXS); take one plane out first")
        store = series.aszarr()
        opened = zarr.open(store, mode="r")
        arrays = [opened[key] for key in sorted(opened.keys(), key=int)] if hasattr(opened, "keys") else [opened]
        squeeze = [i for i, a in enumerate(axes) if a not in "YXS"]
        levels = [_Squeezed(a, squeeze) if squeeze else a for a in arrays]
    except SlideError:
        tif.close()
        raise
    except Exception as exc:  # noqa: BLE001  (any reader failure is named for the user)
        tif.close()
        raise SlideError(f"{path.name}: its image data cannot be read lazily ({type(exc).__name__}: {exc})") from exc
    return Slide(path=path, levels=levels, mpp=_tiff_mpp(tif), _close=[store.close, tif.close])


class _Squeezed:
    """A zarr array with length-1 axes (T, C, Z of an OME series) dropped, still lazy."""

    def __init__(self, array, drop: list[int]):
        self.array, self.drop = array, drop
        self.shape = tuple(n for i, n in enumerate(array.shape) if i not in drop)
        self.dtype = array.dtype
        self.ndim = len(self.shape)
        chunks = getattr(array, "chunks", None)
        self.chunks = tuple(c for i, c in enumerate(chunks) if i not in drop) if chunks else None

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        full, it = [], iter(key)
        for i in range(len(self.array.shape)):
            full.append(0 if i in self.drop else next(it, slice(None)))
        return self.array[tuple(full)]


def _tiff_mpp(tif) -> float | None:
    """µm per pixel from OME metadata (PhysicalSizeX in µm) or an SVS description (MPP = ...)."""
    try:
        if tif.is_ome and tif.ome_metadata:
            match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
            if match and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m")):
                return float(match.group(1))
        description = tif.pages[0].description or ""
        match = re.search(r"MPP\s*=\s*([0-9.]+)", description)
        if match:
            return float(match.group(1))
    except Exception:  # noqa: BLE001  (metadata is a convenience; a slide without it still opens)
        return None
    return None


class _OpenSlideLevel:
    """One OpenSlide level as a lazily indexed (H, W, 3) uint8 array."""

    def __init__(self, handle, level: int):
        self.handle, self.level = handle, level
        w, h = handle.level_dimensions[level]
        self.shape, self.dtype, self.ndim, self.chunks = (h, w, 3), np.dtype(np.uint8), 3, (1024, 1024, 3)
        self.scale = handle.level_downsamples[level]

    def __getitem__(self, key):
        ys, xs = key[0], key[1]
        y0, y1 = ys.start or 0, self.shape[0] if ys.stop is None else ys.stop
        x0, x1 = xs.start or 0, self.shape[1] if xs.stop is None else xs.stop
        region = self.handle.read_region((int(x0 * self.scale), int(y0 * self.scale)), self.level,
                                         (int(x1 - x0), int(y1 - y0)))
        return np.asarray(region.convert("RGB"))


def _open_openslide(path: Path) -> Slide:
    try:
        import openslide
    except ImportError as exc:
        raise SlideError(f"{path.name}: this vendor format needs OpenSlide: pip install openslide-python"
                         " openslide-bin (or convert the slide to a pyramidal OME-TIFF)") from exc
    try:
        handle = openslide.OpenSlide(str(path))
    except Exception as exc:
        raise SlideError(f"{path.name}: OpenSlide cannot open it ({exc})") from exc
    mpp = handle.properties.get("openslide.mpp-x")
    return Slide(path=path, levels=[_OpenSlideLevel(handle, k) for k in range(handle.level_count)],
                 mpp=float(mpp) if mpp else None, _close=[handle.close])


def write_pyramid(path, region: Callable[..., np.ndarray], shape: tuple[int, int],
                  tile: int = 512, n_levels: int | None = None, mpp: float | None = None,
                  compression: str | None = "zlib", per_level: bool = False) -> Path:
    """Write a tiled pyramidal OME-TIFF of an RGB image too large for memory.

    `region(y0, x0, y1, x1)` returns that part of level 0 (uint8 RGB); each further level halves
    the one before (area average), computed from level 0 one band of ``tile * 2**(n_levels-1)``
    rows at a time. With ``per_level=True`` it is called as ``region(level, y0, x0, y1, x1)`` in
    that level's pixels instead (a renderer that draws any level itself), one row of tiles at a
    time, so memory stays at one row of tiles whatever the size. Used by the tests and the slide
    benchmark; any pyramidal OME-TIFF writer's output opens the same way.
    """
    import cv2
    import tifffile

    path = Path(path)
    h, w = int(shape[0]), int(shape[1])
    if n_levels is None:
        n_levels = 1
        while max(h, w) / 2 ** n_levels >= 1024:
            n_levels += 1
    block = tile * 2 ** (n_levels - 1)  # level-0 rows per band: a whole number of tiles on every level

    def band(y0: int, level: int) -> np.ndarray:
        image = np.ascontiguousarray(region(y0, 0, min(h, y0 + block), w), dtype=np.uint8)
        for _ in range(level):
            image = cv2.resize(image, ((image.shape[1] + 1) // 2, (image.shape[0] + 1) // 2),
                               interpolation=cv2.INTER_AREA)
        return image

    def bands(level: int) -> Iterator[np.ndarray]:
        if per_level:
            lh, lw = -(-h // 2 ** level), -(-w // 2 ** level)
            for y0 in range(0, lh, tile):
                yield np.ascontiguousarray(region(level, y0, 0, min(lh, y0 + tile), lw), dtype=np.uint8)
        else:
            for y0 in range(0, h, block):
                yield band(y0, level)

    def tiles_of(level: int) -> Iterator[np.ndarray]:
        for image in bands(level):
            for ty in range(0, image.shape[0], tile):
                for tx in range(0, image.shape[1], tile):
                    piece = np.zeros((tile, tile, 3), np.uint8)
                    part = image[ty:ty + tile, tx:tx + tile]
                    piece[:part.shape[0], :part.shape[1]] = part
                    yield piece

    metadata = {"axes": "YXS"}
    if mpp:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as writer:
        for level in range(n_levels):
            lh, lw = -(-h // 2 ** level), -(-w // 2 ** level)
            writer.write(tiles_of(level), shape=(lh, lw, 3), dtype=np.uint8, tile=(tile, tile),
                         photometric="rgb", compression=compression,
                         subifds=n_levels - 1 if level == 0 else None,
                         subfiletype=1 if level else 0, metadata=metadata if level == 0 else None)
    return path
