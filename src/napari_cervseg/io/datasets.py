"""Readers for a Herlev-layout folder and for a plain ``normal/`` + ``abnormal/`` folder.

Herlev layout (see the data README): ``manifest.csv`` with ``name, herlev_class, label, width,
height, has_mask``; ``images/<herlev_class>/<name>.png``; ``masks/<name>.png`` (0 background,
1 cytoplasm, 2 nucleus). Masks are for evaluation only and are never read by training code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import read_image, to_rgb_uint8

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


class DatasetError(ValueError):
    """A data folder that does not have the expected layout."""


@dataclass(frozen=True)
class Sample:
    name: str
    image_path: Path
    label: str  # "normal" or "abnormal"
    group: str  # Herlev class, or the label for a plain folder
    mask_path: Path | None = None

    def load_image(self) -> np.ndarray:
        return to_rgb_uint8(read_image(self.image_path), name=str(self.image_path))[0]

    def load_mask(self) -> np.ndarray | None:
        if self.mask_path is None:
            return None
        mask = read_image(self.mask_path)
        if mask.ndim == 3:
            mask = mask[..., 0]
        return mask.astype(np.uint8)


def read_herlev(root) -> list[Sample]:
    """All samples of a Herlev-layout folder, in manifest order."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.exists():
        raise DatasetError(
            f"{root}: no manifest.csv; expected a Herlev-layout folder (manifest.csv, images/<class>/,"
            " masks/) or a folder with normal/ and abnormal/ subfolders"
        )
    samples = []
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            name, group, label = row["name"], row["herlev_class"], row["label"]
            image_path = root / "images" / group / f"{name}.png"
            if not image_path.exists():
                matches = list((root / "images" / group).glob(f"{name}.*"))
                if not matches:
                    raise DatasetError(f"{manifest}: image for {name!r} not found under images/{group}/")
                image_path = matches[0]
            mask_path = root / "masks" / f"{name}.png"
            has_mask = str(row.get("has_mask", "1")).strip() in ("1", "true", "True")
            samples.append(Sample(name, image_path, label, group,
                                  mask_path if has_mask and mask_path.exists() else None))
    return samples


def read_class_folders(root) -> list[Sample]:
    """Samples from ``root/normal/*`` and ``root/abnormal/*`` (any image suffix)."""
    root = Path(root)
    samples = []
    for label in ("normal", "abnormal"):
        folder = root / label
        if not folder.is_dir():
            raise DatasetError(f"{root}: missing subfolder {label}/ (need normal/ and abnormal/)")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path.stem, path, label, label))
    if not samples:
        raise DatasetError(f"{root}: no images found in normal/ or abnormal/")
    return samples


def read_dataset(root) -> list[Sample]:
    """Herlev layout if ``manifest.csv`` exists, else ``normal/`` + ``abnormal/`` folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if (root / "manifest.csv").exists():
        return read_herlev(root)
    return read_class_folders(root)


def stratified_split(samples: list[Sample], fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict[str, list[str]]:
    """Split names into train / val / test, stratified by ``group`` (Herlev class), reproducibly."""
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[str]] = {}
    for s in samples:
        by_group.setdefault(s.group, []).append(s.name)
    split = {"train": [], "val": [], "test": []}
    for group in sorted(by_group):
        names = sorted(by_group[group])
        rng.shuffle(names)
        n = len(names)
        n_test = int(round(fractions[2] * n))
        n_val = int(round(fractions[1] * n))
        split["test"] += names[:n_test]
        split["val"] += names[n_test:n_test + n_val]
        split["train"] += names[n_test + n_val:]
    return {k: sorted(v) for k, v in split.items()}


def default_data_root() -> Path | None:
    """``../shared/data/herlev`` relative to the repository, or $CERVSEG_DATA, if present."""
    import os

    env = os.environ.get("CERVSEG_DATA")
    if env:
        return Path(env) if Path(env).exists() else None
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "herlev"
        if (candidate / "manifest.csv").exists():
            return candidate
    return None


@dataclass(frozen=True)
class CellCrop:
    """One annotated cell cut out of a field of view, with its own mask (for evaluation)."""

    name: str  # "<field>-<k>" (k = the cell's page in the field's stack, from 1)
    field: str
    image: np.ndarray  # RGB uint8, the crop
    mask: np.ndarray  # uint8: 0 outside this cell, 1 its cytoplasm, 2 its nucleus
    box: tuple[int, int, int, int]  # (row0, col0, row1, col1) of the crop in the field
    complete: bool  # the cell does not touch the field's border


def read_isbi_cell_crops(root, margin: float = 0.02, complete_only: bool = True) -> list[CellCrop]:
    """Each annotated cell of an ISBI-2014-layout folder cut out as tight as a Herlev crop.

    Parameters
    ----------
    root : path
        A folder with ``images/<field>.png``, ``cells/<field>.tif`` (one page per cell: 1 cell,
        2 its nucleus) and ``manifest.csv`` (``../shared/data/fields-isbi-dev``).
    margin : float
        Margin around the cell's box, as a fraction of its larger side (the field route's
        ``CROP_MARGIN``), clipped at the field's border.
    complete_only : bool
        Leave out cells that touch the field's border (their extent is unknown).

    Returns
    -------
    list of CellCrop
        In field order, then page order. Neighbours that overlap the cell stay in the crop's
        image (as on a slide) but not in its mask.
    """
    import math

    import tifffile

    root = Path(root)
    if not (root / "cells").is_dir() or not (root / "images").is_dir():
        raise DatasetError(f"{root}: expected an ISBI-layout folder with images/<field>.png and cells/<field>.tif")
    crops = []
    for stack_path in sorted((root / "cells").glob("*.tif")):
        field_name = stack_path.stem
        image = to_rgb_uint8(read_image(root / "images" / f"{field_name}.png"))[0]
        pages = tifffile.imread(stack_path)
        pages = pages[None] if pages.ndim == 2 else pages
        height, width = image.shape[:2]
        for k, page in enumerate(pages, start=1):
            rows, cols = np.nonzero(page)
            if rows.size == 0:
                continue
            r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            complete = r0 > 0 and c0 > 0 and r1 < height and c1 < width
            if complete_only and not complete:
                continue
            pad = max(2, int(math.ceil(margin * max(r1 - r0, c1 - c0))))
            box = (max(0, r0 - pad), max(0, c0 - pad), min(height, r1 + pad), min(width, c1 + pad))
            crop = (slice(box[0], box[2]), slice(box[1], box[3]))
            crops.append(CellCrop(f"{field_name}-{k}", field_name, image[crop].copy(),
                                  page[crop].astype(np.uint8), tuple(int(b) for b in box), bool(complete)))
    if not crops:
        raise DatasetError(f"{root}: no annotated cells found in cells/*.tif")
    return crops
