"""Fields of view: find every cell of an image, segment, classify and measure each on its own.

``segment_field`` finds the slide's foreground and the nuclei (dark, compact objects), splits the
foreground among the nuclei (each pixel to the nucleus that reaches it first through the
foreground: one id per pixel, as napari's labels layers show them), then runs the same per-cell
pipeline as :func:`~napari_cervseg.segment_cell` on a crop laid out like a training cell (the cell
centred, a margin of its own size around it) and pastes the results back. A cell's descriptors
are measured on that cell alone: a neighbour's pixels never count.

Images larger than TILE px are searched for cells in overlapping tiles (a cell belongs to the
tile whose core holds its nucleus), so a slide-sized image is never downscaled until nuclei
vanish; the per-cell crops come from the full-resolution image.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops

from ..classify import WEIGHTS_DIR, bundled_models, load_model
from ..classify.predict import classify
from ..io.images import ImageError, to_rgb_uint8
from ..measure.descriptors import measure
from ..measure.records import P_ABNORMAL, PREDICTED_CLASS, CellRecord, by_suspicion
from ..segment.cells import (
    MIN_CELL_AREA,
    find_nuclei,
    foreground_and_slide,
    foreground_mask,
    lab_image,
    partition_cells,
    slide_colour,
)
from ..segment.finder import CellFinder, FoundCell, load_finder, nucleus_contrast
from ..segment.pipeline import give_verdict, segment_cell
from ..segment.result import SegmentationResult, overlay
from ..segment.settings import DEFAULT_SEGMENT_METHOD, settings_for
from ..stages import ProgressCallback, Stages

#: images with a side above this are searched for cells tile by tile
TILE = 2048
#: the classic finder takes images up to this size (px) in one pass (about 0.6 GB at the most;
#: the overlapping parts of a larger image cost more per pixel than one pass)
CLASSIC_TILE = 3072
#: overlap of neighbouring tiles (px): more than a cell's radius, so a cell is whole in its tile
TILE_OVERLAP = 384
#: the margin around a cell in its crop, as a fraction of the cell's larger side: Herlev's
#: training crops are tight (the cell's box spans 99-100 % of the crop, median over the masks of
#: the development split), and a wider margin drove p(abnormal) down on the development fields
CROP_MARGIN = 0.02
#: a field image holds at most this many pixels (10,000 x 10,000 and more with tiles)
MAX_FIELD_PIXELS = 25_000 * 25_000


@dataclass
class FieldResult:
    """Every cell of a field of view, segmented, classified and measured.

    Attributes
    ----------
    cells : ndarray (H, W) int32
        Instance labels: cell k's whole area (nucleus included), 0 background.
    nuclei : ndarray (H, W) int32
        The nuclei, with their cell's id.
    labels : ndarray (H, W) uint8
        0 background, 1 cytoplasm, 2 nucleus, as everywhere else.
    heatmap : ndarray (H, W) float32
        Each cell's explanation in its place (0 outside cells).
    records : list of CellRecord
        One record per cell, in id order: box, centroid, class, p(abnormal), why no verdict (a crop
        that is not a cell the classifier can judge gets no class and is not counted among the
        abnormal cells) and the :func:`~napari_cervseg.measure` descriptors of that cell alone.
        :attr:`table` is the same as flat rows.
    method : str
    model : str or None
    settings : dict
    timings : dict
        Seconds: ``detect``, ``cells`` (all per-cell pipelines) and ``total``.
    warnings : list of str
    extents : dict of int to (box, mask)
        Each cell's full extent, overlaps allowed: ``(row0, col0, row1, col1)`` and a bool mask of
        that box (see :meth:`extent`); where it borders no other cell, its edge is moved (at most
        HALF_STAIN_STEPS px) to where the cell's stain ends. The descriptors are measured on it.
    finder : str
        Which finder found the cells (``"learned"``, ``"classic"``, or ``"boxes"``).
    left_out : list of (row, col)
        Centres of the nuclei the finder found but the route left out as not a cell: a "nucleus"
        barely darker than the cell around it, on a cell that is reported anyway (texture, or
        two cytoplasms overlapping: MIN_REPORTED_CONTRAST, LEFT_OUT_UNDER_OTHERS), or a speck a
        tenth the size of the field's nuclei on such a cell (a granule: MIN_NUCLEUS_SHARE), whatever
        it was called; or, with the finder's optional second look, one it did not see again whose
        crop was called normal. Shown in napari as ``<image> left out`` points, so that none is
        hidden.
    white_balance : dict
        How each cell's crop was white-balanced before it was segmented and classified:
        ``{"mode": ..., "gains": [r, g, b] or None}`` (None: the crops as they are on the field).
    """

    cells: np.ndarray
    nuclei: np.ndarray
    labels: np.ndarray
    heatmap: np.ndarray
    records: list[CellRecord] = field(default_factory=list)
    method: str = DEFAULT_SEGMENT_METHOD
    model: str | None = None
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    extents: dict = field(default_factory=dict)
    finder: str = "classic"
    left_out: list = field(default_factory=list)
    white_balance: dict = field(default_factory=lambda: {"mode": "off", "gains": None})

    def extent(self, cell_id: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """Cell ``cell_id``'s full extent, also where another cell lies over it:
        ``((row0, col0, row1, col1), mask)`` with ``mask`` a bool array of that box.

        Where the finder gave no separate extent (cells painted by hand, say), it is the cell's
        pixels in the ``cells`` labels."""
        cell_id = int(cell_id)
        if cell_id in self.extents:
            return self.extents[cell_id]
        objects = ndi.find_objects((self.cells == cell_id).astype(np.int32))
        if not objects or objects[0] is None:
            known = sorted(int(k) for k in np.unique(self.cells) if k)
            raise KeyError(f"no cell {cell_id} in this field; its cell ids are {known[:20]}"
                           f"{' ...' if len(known) > 20 else ''}")
        box = objects[0]
        return ((box[0].start, box[1].start, box[0].stop, box[1].stop), self.cells[box] == cell_id)

    def outlines(self) -> dict[int, np.ndarray]:
        """Each cell's outline as a polygon, (N, 2) float (row, col) in the field's pixels, from
        its full extent (overlapping outlines cross where cells overlap)."""
        return {r.cell_id: extent_outline(*self.extent(r.cell_id)) for r in self.records}

    @property
    def table(self) -> list[dict]:
        """One flat row per cell (:meth:`CellRecord.row`): what tables, CSVs and napari features hold."""
        return [r.row() for r in self.records]

    def record(self, cell_id: int) -> CellRecord:
        """The record of cell ``cell_id``."""
        for r in self.records:
            if r.cell_id == int(cell_id):
                return r
        raise KeyError(f"no cell {cell_id} in this field; it has {self.n_cells} cells")

    @property
    def n_cells(self) -> int:
        """How many cells were found."""
        return len(self.records)

    @property
    def abnormal_ids(self) -> list[int]:
        """Ids of the cells called abnormal, most suspicious first."""
        return [r.cell_id for r in by_suspicion([r for r in self.records if r.predicted_class == "abnormal"])]

    def rows_by_suspicion(self) -> list[dict]:
        """The table sorted by p(abnormal), highest first: what a screener looks at first."""
        return [r.row() for r in by_suspicion(self.records)]

    def overlay(self, image, alpha: float = 0.45) -> np.ndarray:
        """RGB uint8 picture: labels over the image, every cell outlined, abnormal cells boxed in
        red with their id and p(abnormal) (so none hides among the normal ones)."""
        return field_overlay(image, self, alpha)

    @property
    def no_verdict_ids(self) -> list[int]:
        """Ids of the cells given no class (not a cell the classifier can judge, or several cells)."""
        return [r.cell_id for r in self.records if r.predicted_class is None]

    def verdict(self) -> str:
        """The field's flag for a screener: what to review first."""
        return field_verdict(self.n_cells, len(self.abnormal_ids), len(self.no_verdict_ids))

    def summary(self) -> dict:
        """JSON-friendly description without the arrays."""
        return {"n_cells": self.n_cells, "n_abnormal": len(self.abnormal_ids),
                "n_no_verdict": len(self.no_verdict_ids), "verdict": self.verdict(),
                "abnormal_cells": self.abnormal_ids, "cells_without_verdict": self.no_verdict_ids,
                "finder": self.finder, "n_left_out": len(self.left_out),
                "left_out": [[round(float(r), 1), round(float(c), 1)] for r, c in self.left_out], "method": self.method,
                "model": self.model, "settings": self.settings, "white_balance": self.white_balance,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}, "warnings": list(self.warnings)}


def extent_outline(box, mask: np.ndarray) -> np.ndarray:
    """The outline (N, 2) (row, col) of the largest piece of ``mask`` placed at ``box``'s corner."""
    contours, _ = cv2.findContours(np.pad(mask, 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((0, 2), np.float32)
    contour = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float32) - 1  # (x, y), pad undone
    return np.stack([contour[:, 1] + box[0], contour[:, 0] + box[1]], 1)


def field_verdict(n_cells: int, n_abnormal: int, n_no_verdict: int) -> str:
    """"review: 2 abnormal cells, 1 cell without a verdict", or "no abnormal cell among 7 cells"."""
    def count(n, what):
        return f"{n} {what}{'' if n == 1 else 's'}"

    if n_cells == 0:
        return "no cells found"
    parts = []
    if n_abnormal:
        parts.append(count(n_abnormal, "abnormal cell"))
    if n_no_verdict:
        parts.append(count(n_no_verdict, "cell") + " without a verdict")
    if parts:
        return "review: " + ", ".join(parts)
    return f"no abnormal cell among {count(n_cells, 'cell')}"


def _tiles(shape, tile: int, overlap: int) -> Iterator[tuple[slice, slice, slice, slice]]:
    """(rows, cols) of each tile with overlap, and the core of it that it owns."""
    h, w = shape[:2]
    step = tile - overlap
    for r0 in range(0, max(h - overlap, 1), step):
        for c0 in range(0, max(w - overlap, 1), step):
            r1, c1 = min(h, r0 + tile), min(w, c0 + tile)
            core_r0 = 0 if r0 == 0 else r0 + overlap // 2
            core_c0 = 0 if c0 == 0 else c0 + overlap // 2
            core_r1 = h if r1 == h else r1 - overlap // 2
            core_c1 = w if c1 == w else c1 - overlap // 2
            yield slice(r0, r1), slice(c0, c1), slice(core_r0, core_r1), slice(core_c0, core_c1)


def _detect_in(rgb: np.ndarray, foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cell regions (int32, ids from 1) and nucleus seeds (same ids) of one image or tile
    (``foreground``: its ``foreground_mask``, when already made).

    A foreground blob with nuclei is split among them; a blob of cell size with no visible
    nucleus is kept as one cell (the per-cell pipeline then looks for its nucleus)."""
    lab = lab_image(rgb)
    foreground = foreground_mask(rgb, lab) if foreground is None else foreground
    nuclei = find_nuclei(rgb, foreground, lab)
    cells = partition_cells(rgb, foreground, nuclei, lab)
    blobs, n = ndi.label(foreground & (cells == 0))
    next_id = int(nuclei.max()) + 1
    if n:
        touched = set(np.unique(blobs[ndi.binary_dilation(cells > 0)]).tolist())  # rims of found cells
        for region in regionprops(blobs):
            # a cell without a visible nucleus is still a solid blob (not a frame, a fibre or a rim)
            if region.area >= MIN_CELL_AREA and region.label not in touched and region.solidity >= 0.6:
                r0, c0, r1, c1 = region.bbox
                cells[r0:r1, c0:c1][region.image] = next_id
                next_id += 1
    return cells, nuclei


def detect_cells(rgb: np.ndarray, progress: Stages | None = None, foreground: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cell regions and nucleus seeds (int32 instance labels sharing ids) of a field, tile by
    tile for images larger than CLASSIC_TILE px (``foreground``: the image's ``foreground_mask``
    when already made; read for an image of one tile)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= CLASSIC_TILE:
        return _detect_in(rgb, foreground)
    cells = np.zeros((h, w), np.int32)
    seeds = np.zeros((h, w), np.int32)
    next_id = 1
    tiles = list(_tiles(rgb.shape, CLASSIC_TILE, TILE_OVERLAP))
    for i, (rows, cols, core_rows, core_cols) in enumerate(tiles):
        if progress is not None:
            progress.report(f"finding cells (tile {i + 1} of {len(tiles)})", 0.05 + 0.15 * i / len(tiles))
        tile_cells, tile_seeds = _detect_in(rgb[rows, cols])
        for k in np.unique(tile_cells)[1:]:
            own = tile_cells == k
            seed = tile_seeds == k
            rr, cc = np.nonzero(seed if seed.any() else own)
            centre_r, centre_c = rows.start + int(rr.mean()), cols.start + int(cc.mean())
            if not (core_rows.start <= centre_r < core_rows.stop and core_cols.start <= centre_c < core_cols.stop):
                continue  # the neighbouring tile owns this cell
            free = own & (cells[rows, cols] == 0)
            cells[rows, cols][free] = next_id
            seeds[rows, cols][seed & free] = next_id
            next_id += 1
    return cells, seeds


#: the cell finders of :func:`segment_field`: the U-Net trained on composed fields from
#: pseudo-labels (:mod:`napari_cervseg.segment.finder`), or the hand-set contrast rules of
#: :mod:`napari_cervseg.segment.cells`
FINDERS = ("learned", "classic")
#: the finder a field gets unless told otherwise. The rule, written before scoring
#: (benchmarks/results/finder_rule.md): "learned" when, on both development field sets, its
#: nucleus F1 is higher than "classic"'s and, on the Herlev fields, it catches at least as many
#: abnormal cells. Met since the self-trained finder with the size rule for nucleus-less cells
#: (Herlev 0.936 against 0.800, ISBI 0.952 against 0.853; abnormal caught or listed 0.935 against
#: 0.806: benchmarks/results/fields_learned.md, fields_classic.md)
DEFAULT_FINDER = "learned"

#: the classifier a field's cells get for model "default": the three-network ensemble, which caught
#: more abnormal field cells at the screening point than the compact network alone, by a rule
#: written before scoring (benchmarks/results/field_classifier_rule.md); single cells keep the
#: compact network
FIELD_MODEL = "ensemble3"


def field_model(model):
    """The classifier the field route uses for ``model``: ``"default"`` means :data:`FIELD_MODEL`;
    anything else (another name, a file, a loaded model, None for no classifier) is used as given."""
    return FIELD_MODEL if isinstance(model, str) and model == "default" else model


def _found_from_labels(regions: np.ndarray, seeds: np.ndarray) -> list:
    """The classic finder's regions and seeds as one FoundCell each (the extent is the region)."""
    found = []
    for k, box in enumerate(ndi.find_objects(regions), start=1):
        if box is None:
            continue
        found.append(FoundCell((box[0].start, box[1].start, box[0].stop, box[1].stop), regions[box] == k,
                               seeds[box] == k, 1.0))
    return found


def resolve_finder(finder):
    """``"classic"`` or a loaded :class:`~napari_cervseg.segment.finder.CellFinder` for ``finder``
    (``"learned"``: the bundled one; a path: one made by ``cervseg train-finder``)."""
    if finder == "classic" or isinstance(finder, CellFinder) or (
            not isinstance(finder, (str, Path)) and callable(getattr(finder, "find", None))):
        return finder  # (anything with find(rgb, scale) -> FoundCells serves)
    if finder in (None, "learned"):
        return load_finder("default")
    if isinstance(finder, (str, Path)) and Path(finder).suffix == ".safetensors":
        return load_finder(finder)
    raise ValueError(f"unknown finder {finder!r}; choose {' or '.join(map(repr, FINDERS))}, or give a"
                     " .safetensors finder made by `cervseg train-finder`")


def find_cells(rgb: np.ndarray, finder="classic", progress: Stages | None = None, scale: float | None = None,
               foreground: np.ndarray | None = None) -> list:
    """Every cell of a field as :class:`~napari_cervseg.segment.finder.FoundCell` (box, full
    extent, nucleus), tile by tile for images larger than TILE px (a cell belongs to the tile
    whose core holds its nucleus). ``foreground``: the image's ``foreground_mask`` when already
    made (the classic and the bundled finder read it instead of making it again)."""
    finder = resolve_finder(finder)
    if finder == "classic":
        return _found_from_labels(*detect_cells(rgb, progress, foreground))
    h, w = rgb.shape[:2]
    if max(h, w) <= TILE:
        if foreground is not None and isinstance(finder, CellFinder):
            return finder.find(rgb, scale, foreground=foreground)
        return finder.find(rgb, scale)
    tiles = list(_tiles(rgb.shape, TILE, TILE_OVERLAP))
    if scale is None:  # one scale for the whole image, from its middle tile
        rows, cols, _, _ = tiles[len(tiles) // 2]
        scale = finder.choose_scale(rgb[rows, cols])
    found = []
    for i, (rows, cols, core_rows, core_cols) in enumerate(tiles):
        if progress is not None:
            progress.report(f"finding cells (tile {i + 1} of {len(tiles)})", 0.05 + 0.15 * i / len(tiles))
        for cell in finder.find(rgb[rows, cols], scale):
            centre = (rows.start + cell.centre[0], cols.start + cell.centre[1])
            if not (core_rows.start <= centre[0] < core_rows.stop and core_cols.start <= centre[1] < core_cols.stop):
                continue  # the neighbouring tile owns this cell
            r0, c0, r1, c1 = cell.box
            cell.box = (r0 + rows.start, c0 + cols.start, r1 + rows.start, c1 + cols.start)
            found.append(cell)
    return found


def _crop_box(box: tuple[slice, slice], shape) -> tuple[int, int, int, int]:
    """A crop around a cell's bounding box laid out like a training cell: the cell centred,
    CROP_MARGIN of its size around it (less at the image's border)."""
    r0, r1, c0, c1 = box[0].start, box[0].stop, box[1].start, box[1].stop
    margin = max(2, int(math.ceil(CROP_MARGIN * max(r1 - r0, c1 - c0))))
    return (max(0, r0 - margin), max(0, c0 - margin), min(shape[0], r1 + margin), min(shape[1], c1 + margin))


#: the crop's nucleus is this cell's when it overlaps the detected nucleus at least this much (IoU);
#: below, the crop's pipeline drew something else (a neighbour's nucleus, cytoplasm that a
#: neighbour darkens) and the detected nucleus is kept
MIN_NUCLEUS_AGREEMENT = 0.3
#: below that agreement the crop's nucleus is still this cell's when it holds at least this share
#: of the detected nucleus and is not a bare nucleus (fixed, not tuned; benchmarks/results/finder_rule.md)
TAKE_NUCLEUS_HOLDING_SEED = True
HOLDS_SEED = 0.9


def _own_nucleus(result: SegmentationResult, region: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The nucleus of this cell (:func:`_chosen_nucleus`); a found nucleus's is completed by the
    crop's nucleus pieces on it, whole (:func:`_whole_in_crop`)."""
    chosen = _chosen_nucleus(result, region, seed)
    return _whole_in_crop(result, chosen) if seed.any() else chosen


def _chosen_nucleus(result: SegmentationResult, region: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The crop's nucleus components inside the cell that the detected nucleus (seed) touches,
    when they agree with it or hold it (and leave the cell cytoplasm); else the seed. A cell
    found without a seed keeps the crop's largest nucleus component."""
    seed = seed & region
    nucleus = (result.labels == 2) & region
    if not nucleus.any():
        return seed
    parts, _ = ndi.label(nucleus)
    if seed.any():
        touched = np.unique(parts[seed])
        chosen = np.isin(parts, touched[touched > 0])
        iou = (chosen & seed).sum() / max(1, (chosen | seed).sum())
        if iou >= MIN_NUCLEUS_AGREEMENT:
            return chosen
        # the finder found part of a large, pale or clumped nucleus that the crop's segmentation
        # drew whole (benchmarks/results/finder_rule.md): the crop's, unless it leaves no cytoplasm
        holds_seed = (chosen & seed).sum() >= HOLDS_SEED * seed.sum()
        not_bare = (region & ~chosen).sum() >= BARE_NUCLEUS_CYTOPLASM * chosen.sum()
        return chosen if TAKE_NUCLEUS_HOLDING_SEED and holds_seed and not_bare else seed
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return parts == int(np.argmax(sizes))


#: the crop's nucleus components that overlap the chosen nucleus are taken whole, also where they
#: reach past the finder's extent (a cell that is nearly all nucleus is found smaller than its
#: nucleus); benchmarks/results/finder_rule.md, "The crop's nucleus is not cut by the finder's extent"
NUCLEUS_WHOLE_IN_CROP = True


def _whole_in_crop(result: SegmentationResult, nucleus: np.ndarray) -> np.ndarray:
    """``nucleus`` with the crop's nucleus components that overlap it, whole (not cut to the
    cell's found extent)."""
    drawn = result.labels == 2
    if not NUCLEUS_WHOLE_IN_CROP or not (nucleus & drawn).any():
        return nucleus
    parts, _ = ndi.label(drawn)
    touched = np.unique(parts[nucleus & drawn])
    return nucleus | np.isin(parts, touched[touched > 0])


def _cell_record(cell_id: int, region: np.ndarray, nucleus: np.ndarray, image, origin, pixel_size) -> CellRecord:
    """One cell's id, box, centroid and descriptors, measured on that cell alone (0/1/2 labels of
    its own pixels in its own box: no neighbour's pixel counts); no class yet."""
    rows, cols = np.nonzero(region)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    own = np.zeros((r1 - r0, c1 - c0), np.uint8)
    own[region[r0:r1, c0:c1]] = 1
    own[nucleus[r0:r1, c0:c1] & region[r0:r1, c0:c1]] = 2
    crop = None if image is None else image[r0:r1, c0:c1]
    return CellRecord(cell_id=int(cell_id),
                      bbox=(int(origin[0] + r0), int(origin[1] + c0), int(origin[0] + r1), int(origin[1] + c1)),
                      centroid=(float(origin[0] + rows.mean()), float(origin[1] + cols.mean())),
                      descriptors=measure(own, crop, pixel_size=pixel_size))


def cell_rows(cells: np.ndarray, nuclei: np.ndarray, image=None, pixel_size: float | None = None,
              classes: dict | None = None) -> list[dict]:
    """Descriptors of every cell of instance labels, each measured alone (after the user's
    corrections, for example).

    Parameters
    ----------
    cells, nuclei : ndarray (H, W) int
        Instance labels sharing ids (a nucleus pixel of id k belongs to cell k).
    image : ndarray, optional
        The field, for intensity descriptors.
    pixel_size : float, optional
        µm per pixel.
    classes : dict of int to dict, optional
        Per cell id, columns to carry into its row (class, p(abnormal) from the segmentation).

    Returns
    -------
    list of dict
        One row per cell id, in id order: ``cell_id``, ``bbox``, ``centroid``, the descriptors,
        and the ``classes`` columns.
    """
    cells, nuclei = np.asarray(cells), np.asarray(nuclei)
    if cells.ndim != 2 or nuclei.shape != cells.shape:
        raise ValueError(f"cells and nuclei must be 2D instance labels of one shape; got {cells.shape} and"
                         f" {nuclei.shape}")
    rgb = None
    if image is not None and np.shape(image)[:2] == cells.shape:
        rgb = to_rgb_uint8(image)[0]
    rows = []
    for k, box in enumerate(ndi.find_objects(cells.astype(np.int64)), start=1):
        if box is None:
            continue
        record = _cell_record(k, cells[box] == k, nuclei[box] == k, None if rgb is None else rgb[box],
                              (box[0].start, box[1].start), pixel_size)
        rows.append({"cell_id": record.cell_id, "bbox": record.bbox, "centroid": record.centroid,
                     **record.descriptors, **(classes or {}).get(k, {})})
    return rows


def stored_classes(cell_classes, cells: np.ndarray) -> dict[int, dict]:
    """The classes a run stored (``{id: [class, p(abnormal), row, col]}``, JSON or dict) matched to
    the cells of ``cells`` by where each stored cell's centroid lies, not by id: ids swapped or
    renumbered by hand keep each cell's own class. A cell holding no stored centroid, or more
    than one, gets none. Entries without a centroid (older runs) match by id."""
    if isinstance(cell_classes, str):
        try:
            cell_classes = json.loads(cell_classes)
        except ValueError:
            return {}
    if not isinstance(cell_classes, dict):
        return {}
    hits: dict[int, list] = {}
    for key, value in cell_classes.items():
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            continue
        entry = {PREDICTED_CLASS: value[0], P_ABNORMAL: value[1]}
        if len(value) >= 4:
            r, c = int(round(float(value[2]))), int(round(float(value[3])))
            if 0 <= r < cells.shape[0] and 0 <= c < cells.shape[1] and cells[r, c] > 0:
                hits.setdefault(int(cells[r, c]), []).append(entry)
        else:
            try:
                hits.setdefault(int(key), []).append(entry)
            except ValueError:
                continue
    return {k: v[0] for k, v in hits.items() if len(v) == 1}


def segment_field(image, model="default", method: str = DEFAULT_SEGMENT_METHOD, *, settings=None, target=None,
                  device=None, progress: ProgressCallback | None = None, operating_point=None,
                  pixel_size: float | None = None, should_stop=None, finder=None,
                  finder_scale: float | None = None, within: tuple[int, int, int, int] | None = None,
                  per_cell: str = "segment", white_balance: str | None = None, **options) -> FieldResult:
    """Find, segment, classify and measure every cell of a field of view.

    Parameters
    ----------
    image : ndarray
        (H, W) grey or (H, W, 3|4) RGB(A) field; uint8, uint16 or float. Any size: images larger
        than TILE px are searched in overlapping tiles, never downscaled.
    model, method, settings, target, device, operating_point, **options
        As for :func:`~napari_cervseg.segment_cell`, applied to every cell; except that model
        ``"default"`` is, for fields, the three-network ensemble :data:`FIELD_MODEL` (pass the
        compact network's file, ``load_model("default").source``, to use it alone).
    progress : callable, optional
        ``progress(stage, fraction)``.
    pixel_size : float, optional
        µm per pixel, for the descriptors in µm.
    should_stop : callable, optional
        Checked between cells; when it returns True the cells finished so far are returned
        (with a warning saying so).
    finder : {"learned", "classic"}, path or CellFinder, optional
        What finds the cells (default: DEFAULT_FINDER): the learned finder (bundled, or a
        ``.safetensors`` file from ``cervseg train-finder``) or the hand-set contrast rules.
    finder_scale : float, optional
        The learned finder looks at the image resized by this factor (default 0.7, for Herlev or
        ISBI magnification; about half that for an image magnified twice as much).
    within : (y0, x0, y1, x1), optional
        Segment only the cells whose centre (their nucleus's, else their extent's) lies in this
        box; the rest of the image is context (a slide's tile and its margin: each cell is then
        segmented by the one tile that owns it).
    per_cell : {"segment", "classify"}
        What is done with each found cell: ``"segment"`` (segment_cell on its crop: the method's
        segmentation and heatmap, the default) or ``"classify"`` (the finder's own outline and
        nucleus, the classifier's verdict on the same crop and the applicability check; no
        heatmap, several times faster: for slides, whose suspicious cells get heatmaps afterwards).
    white_balance : {"into-range", "into-range-chroma", "to-reference", "off"}, optional
        How each found cell's crop is white-balanced before it is segmented and classified
        (default: :data:`WHITE_BALANCE`, ``"into-range"``, for the bundled classifiers; ``"off"``
        for a classifier of your own, whose training slides are not known): a slide colour
        outside the range of the networks' training images is brought to the nearest colour in
        it, so that a cell on a tinted slide is judged like one on the slides they learned from.
        For a slide scanned on a near-white background ``"into-range-chroma"`` (brightness and
        hue separately) gives fewer cells without a verdict. Grey images are never balanced; the
        descriptors always read the field's own pixels.

    Returns
    -------
    FieldResult
        ``cells`` and ``nuclei`` instance labels sharing ids, semantic ``labels``, ``heatmap``,
        ``table`` (one row per cell, measured on the cell's full extent) and each cell's full
        extent (:meth:`FieldResult.extent`). Where cells overlap, each pixel of the labels belongs
        to the cell whose nucleus is nearest; the extents keep the overlap.

    See Also
    --------
    napari_cervseg.segment_cell : one cell per image.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cervseg import segment_field
    >>> segment_field(np.full((64, 64, 3), 230, np.uint8), model=None, method="colour-baseline").n_cells
    0
    """
    t_start = time.perf_counter()
    stages = Stages(progress)
    field_settings, ignored = settings_for(method, settings, **options)
    finder = resolve_finder(DEFAULT_FINDER if finder is None else finder)
    model_obj = load_model(field_model(model), device=device) if model is not None else None
    if per_cell not in PER_CELL:
        raise ValueError(f"per_cell = {per_cell!r}: one of {', '.join(PER_CELL)}")
    white_balance = white_balance_for(model_obj, white_balance)
    rgb, warnings = to_rgb_uint8(image)
    if rgb.shape[0] * rgb.shape[1] > MAX_FIELD_PIXELS:
        raise ImageError(f"image of {rgb.shape[0]} x {rgb.shape[1]} px is larger than a field can be"
                         f" ({MAX_FIELD_PIXELS} px); cut it into regions first")
    h, w = rgb.shape[:2]
    # a field of one tile: its stained area serves the finder and the coverage check (made once,
    # with the bare slide's colour, which the white balance and the cells' edges use)
    if within is None and max(h, w) <= TILE:
        foreground, slide = foreground_and_slide(rgb)
    else:
        foreground, slide = None, slide_colour(rgb)
    with stages("detect", report="finding cells", at=0.02):
        found = find_cells(rgb, finder, stages, scale=finder_scale, foreground=foreground)
    found_nuclei = _found_nuclei(found, (h, w))
    gains = white_balance_gains(rgb, white_balance, slide)
    if within is not None:
        y0, x0, y1, x1 = within
        found = [cell for cell in found if y0 <= cell.centre[0] < y1 and x0 <= cell.centre[1] < x1]
    planes = _LabelPlanes((h, w))
    records: list[CellRecord] = []
    extents: dict = {}
    stopped = False
    left_out: list[tuple[float, float]] = []
    kept: list[_Reported] = []
    pale: list[_Reported] = []  # cells whose reported nucleus is barely darker than the cell (MIN_REPORTED_CONTRAST)
    t_cells = time.perf_counter()
    for n, cell in enumerate(found, start=1):
        if should_stop is not None and should_stop():
            stopped = True
            break
        stages.report(f"cell {n} of {len(found)}", 0.2 + 0.8 * (n - 1) / max(1, len(found)))
        # cropped, segmented, classified and reported whole: with the cytoplasm its polygon missed
        cell = _with_missed_cytoplasm(cell)
        (r0, c0, r1, c1), region, seed = _in_crop(cell, (h, w))
        crop = white_balanced(rgb[r0:r1, c0:c1], gains)
        if per_cell == "classify":
            result = classify_found_cell(crop, region, seed, model_obj, operating_point)
        else:
            result = segment_cell(crop, model=model_obj, method=method, settings=field_settings, target=target,
                                  device=device, operating_point=operating_point, max_pixels=None,
                                  warn_if_field=False)
        nucleus = _own_nucleus(result, region, seed)
        region |= nucleus
        cell_id = len(kept) + len(pale) + 1  # renumbered once all are known
        # what is reported of the cell: the crop's region (with clump cytoplasm not cropped, if any)
        (q0, q1, q2, q3), reported, reported_nucleus, heatmap = _with_clump_cytoplasm(
            cell, (r0, c0, r1, c1), region, nucleus, result.heatmap)
        record = _cell_record(cell_id, reported, reported_nucleus, rgb[q0:q2, q1:q3], (q0, q1), pixel_size)
        _judge(record, result)
        _withhold_if_not_one_cell(record, result, region, nucleus, seed, found_nuclei[r0:r1, c0:c1], n)
        if record.predicted_class == "normal" and not cell.is_confirmed():
            # the finder's second look did not see this nucleus, and its crop looks normal: most
            # such "cells" are texture on a cell's cytoplasm; one that looks abnormal stays
            left_out.append(tuple(float(v) for v in cell.centre))
            continue
        item = _Reported(record, cell.centre, (q0, q1), reported, reported_nucleus,
                         None if heatmap is None else np.asarray(heatmap, np.float32)[reported])
        if MIN_REPORTED_CONTRAST > 0 and nucleus_contrast(rgb[q0:q2, q1:q3], reported_nucleus,
                                                          reported) < MIN_REPORTED_CONTRAST:
            # a "nucleus" barely darker than its cell: decided once every other cell is known
            pale.append(item)
            continue
        kept.append(item)
    # cells are painted once all are known: some are left out for what lies around them
    standing, on_others = _pale_standing(pale, kept, (h, w))
    kept, specks = _without_specks(kept + standing, (h, w))
    left_out += on_others + specks
    kept = _at_stain_edges(kept, rgb, slide, pixel_size)
    for item in kept:
        cell_id = len(records) + 1
        planes.paint(cell_id, item.origin, item.region, item.nucleus, item.heatmap_box())
        records.append(replace(item.record, cell_id=cell_id))
        extents[cell_id] = _extent(item.region, item.origin)
    cells, nuclei, labels, heatmap = planes.finished()
    stages.timings["cells"] = time.perf_counter() - t_cells
    if not found:
        warnings.append("no cells found: nothing in the image looks like a cell (a stained object with a"
                        " nucleus, or a solid stained object of cell size)")
    elif not stopped and foreground is not None:
        # (made for a field of one tile: not on a slide's tile, whose margin is someone else's; not
        # on an image of gigabytes)
        warnings += _coverage_warnings(cells, foreground)
    if stopped:
        warnings.append(f"stopped after {len(records) + len(left_out)} of {len(found)} cells; the rest were not"
                        " segmented")
    warnings += [f"option {k!r} does not apply to method {method!r}; ignored" for k in ignored]
    stages.timings["total"] = time.perf_counter() - t_start
    stages.report("done", 1.0)
    return FieldResult(cells=cells, nuclei=nuclei, labels=labels, heatmap=heatmap, records=records, method=method,
                       model=getattr(model_obj, "source", None), settings=field_settings.as_dict(),
                       timings=stages.timings, warnings=warnings, extents=extents,
                       finder=finder if finder == "classic" else "learned", left_out=left_out,
                       white_balance={"mode": white_balance,
                                      "gains": None if gains is None else [round(float(g), 4) for g in gains]})


#: what FieldResult.left_out holds, in words (the CLI, the widget, the slide report and the GeoJSON)
LEFT_OUT_DESCRIPTION = ("found nuclei left out as not cells: a 'nucleus' barely darker than the cell it lies on"
                        " (texture, or two cytoplasms overlapping) or a tenth the size of the field's nuclei"
                        " on another cell (a speck), or, with the finder's optional second look, one it did not"
                        " see again whose cell looked normal")

#: a found cell whose reported nucleus is less than this much darker than a ring 2-6 px around
#: it inside the cell (segment.finder.nucleus_contrast) has a "nucleus" that may be texture, or
#: two cytoplasms overlapping: see LEFT_OUT_UNDER_OTHERS. A bare nucleus (no ring) is not one.
#: 0.10 on the validation compositions' per-cell table (2 of 557 true cells under it, 55 of 146
#: false ones); benchmarks/results/finder_rule.md, "A pale 'nucleus' lying on another cell". 0 off
MIN_REPORTED_CONTRAST = 0.10
#: such a cell is left out (FieldResult.left_out, whatever its call) when at least this share of
#: its extent lies under the cells kept: texture on a cell that is reported anyway. One standing
#: alone is kept (a cell found through a wrong nucleus is still a cell: leaving those out lost
#: real cells). On the validation table the share is 0.57-0.85 for the first kind, 0-0.34 for
#: the second
LEFT_OUT_UNDER_OTHERS = 0.5


#: a found cell whose reported nucleus is smaller than this share of the median reported nucleus of
#: its field, and which lies mostly under the other cells kept (LEFT_OUT_UNDER_OTHERS), is a speck
#: or granule on another cell's cytoplasm, not a cell: left out. One standing on its own (a
#: superficial cell's small nucleus, an inflammatory cell between cells) is kept. 0.10 on the
#: validation compositions' table (no true cell under 0.12, 39 false ones under 0.10);
#: benchmarks/results/finder_rule.md, "A speck lying on another cell". 0 off
MIN_NUCLEUS_SHARE = 0.10


@dataclass
class _Reported:
    """A found cell as it will be reported, before it is numbered and painted: its record, the
    finder's centre, the box's origin, its full extent and nucleus in that box, and the heatmap's
    values on the extent's pixels (None without a heatmap)."""

    record: CellRecord
    centre: tuple
    origin: tuple[int, int]
    region: np.ndarray
    nucleus: np.ndarray
    heatmap_values: np.ndarray | None

    def heatmap_box(self) -> np.ndarray | None:
        if self.heatmap_values is None:
            return None
        box = np.zeros(self.region.shape, np.float32)
        box[self.region] = self.heatmap_values
        return box

    def share_under(self, covered: np.ndarray) -> float:
        """The share of this cell's extent that ``covered`` (a field-sized bool mask) covers."""
        q0, q1 = self.origin
        box = covered[q0:q0 + self.region.shape[0], q1:q1 + self.region.shape[1]]
        return float((box & self.region).sum() / max(1, self.region.sum()))

    def left_out_at(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.centre)


def _coverage(items: list[_Reported], shape) -> np.ndarray:
    """How many of the ``items``' extents cover each pixel of a field of ``shape`` (uint8, at most 255)."""
    coverage = np.zeros(shape, np.uint8)
    for item in items:
        q0, q1 = item.origin
        box = coverage[q0:q0 + item.region.shape[0], q1:q1 + item.region.shape[1]]
        box += item.region & (box < 255)
    return coverage


def _pale_standing(pale: list[_Reported], kept: list[_Reported], shape) -> tuple[list, list]:
    """Of the pale-nucleus cells (see MIN_REPORTED_CONTRAST): (those standing on their own, the
    centres of those lying mostly under the ``kept`` cells' extents)."""
    if not pale:
        return [], []
    covered = _coverage(kept, shape) > 0
    standing, on_others = [], []
    for item in pale:
        if item.share_under(covered) >= LEFT_OUT_UNDER_OTHERS:
            on_others.append(item.left_out_at())
        else:
            standing.append(item)
    return standing, on_others


def _without_specks(cells: list[_Reported], shape) -> tuple[list, list]:
    """(the cells kept, the centres of the specks left out): see MIN_NUCLEUS_SHARE."""
    if MIN_NUCLEUS_SHARE <= 0 or len(cells) < 2:
        return cells, []
    areas = np.array([item.nucleus.sum() for item in cells])
    # (a cell reported without a nucleus is not a speck: it is judged as it is)
    small = (areas > 0) & (areas < MIN_NUCLEUS_SHARE * np.median(areas))
    if not small.any():
        return cells, []
    covered = _coverage([item for item, is_small in zip(cells, small, strict=True) if not is_small], shape) > 0
    speck = [bool(is_small) and item.share_under(covered) >= LEFT_OUT_UNDER_OTHERS
             for item, is_small in zip(cells, small, strict=True)]
    return ([item for item, is_speck in zip(cells, speck, strict=True) if not is_speck],
            [item.left_out_at() for item, is_speck in zip(cells, speck, strict=True) if is_speck])


#: each reported cell's free boundary (its boundary pixels on no other cell's extent) moves one
#: pixel at a time, out where the stain (Lab distance from the slide's colour) is at least this
#: share of the median stain of the cell's interior, in where it is under it, at most
#: HALF_STAIN_STEPS pixels: the extent follows the cell's own edge wherever the finder's p(cell)
#: put it. Chosen on the validation compositions (the ISBI development fields seen too):
#: benchmarks/results/finder_rule.md, "Each cell's free boundary moved". STEPS 0 off
HALF_STAIN_LEVEL = 0.3
HALF_STAIN_STEPS = 3
#: the interior whose median stain is the cell's own: its extent eroded this far (px), nucleus out
STAIN_INTERIOR_DEPTH = 3
#: a cell with no more interior than this (px) is left as it is: a bare nucleus keeps its extent
#: (and with it the "no cytoplasm" its call was given with)
MIN_STAIN_INTERIOR = 20


def _at_stain_edges(cells: list[_Reported], rgb: np.ndarray, slide: np.ndarray, pixel_size) -> list[_Reported]:
    """The cells with their extents refined (see HALF_STAIN_LEVEL), each against the other cells'
    extents as they were; a cell whose extent moves is measured again (its call is its crop's).
    ``slide``: the image's bare-slide RGB (``segment.cells.slide_colour``)."""
    if HALF_STAIN_STEPS <= 0 or not cells:
        return cells
    h, w = rgb.shape[:2]
    slide_lab = cv2.cvtColor(np.clip(np.round(slide), 0, 255).astype(np.uint8).reshape(1, 1, 3),
                             cv2.COLOR_RGB2Lab).astype(np.float32).reshape(3)
    coverage = _coverage(cells, (h, w))
    return [_refined(item, rgb, slide_lab, coverage, pixel_size) for item in cells]


def _refined(item: _Reported, rgb: np.ndarray, slide_lab: np.ndarray, coverage: np.ndarray, pixel_size
             ) -> _Reported:
    h, w = rgb.shape[:2]
    pad, blur = HALF_STAIN_STEPS, 2  # room to grow; lab_image's median filter reads 2 px around
    q0, q1 = item.origin
    rh, rw = item.region.shape
    a0, b0, a1, b1 = max(0, q0 - pad), max(0, q1 - pad), min(h, q0 + rh + pad), min(w, q1 + rw + pad)
    inner = (slice(q0 - a0, q0 - a0 + rh), slice(q1 - b0, q1 - b0 + rw))
    region = np.zeros((a1 - a0, b1 - b0), bool)
    nucleus = np.zeros_like(region)
    region[inner], nucleus[inner] = item.region, item.nucleus
    interior = ndi.binary_erosion(region, iterations=STAIN_INTERIOR_DEPTH) & ~nucleus
    if interior.sum() <= MIN_STAIN_INTERIOR:
        return item  # a bare nucleus, or a sliver: no cytoplasm of its own to measure the edge by
    m0, n0 = max(0, a0 - blur), max(0, b0 - blur)
    lab = lab_image(np.ascontiguousarray(rgb[m0:min(h, a1 + blur), n0:min(w, b1 + blur)]))
    stain = np.linalg.norm(lab[a0 - m0:a0 - m0 + region.shape[0], b0 - n0:b0 - n0 + region.shape[1]] - slide_lab,
                           axis=-1)
    others = coverage[a0:a1, b0:b1] > region  # another cell's extent lies there
    edge = HALF_STAIN_LEVEL * float(np.median(stain[interior]))
    refined = region
    for _ in range(HALF_STAIN_STEPS):
        out = ndi.binary_dilation(refined) & ~refined & ~others & (stain >= edge)
        into = refined & ~ndi.binary_erosion(refined) & ~others & ~nucleus & (stain < edge)
        moved = (refined | out) & ~into
        if np.array_equal(moved, refined):
            break
        refined = moved
    if np.array_equal(refined, region) or not refined.any():
        return item
    heat = None
    if item.heatmap_values is not None:
        # a grown pixel takes the heat of the cell's pixels beside it
        placed = np.zeros(region.shape, np.float32)
        placed[inner] = item.heatmap_box()
        heat = ndi.grey_dilation(placed, size=(2 * pad + 1, 2 * pad + 1))
        heat[region] = placed[region]
        heat = heat[refined]
    measured = _cell_record(item.record.cell_id, refined, nucleus, rgb[a0:a1, b0:b1], (a0, b0), pixel_size)
    record = replace(item.record, bbox=measured.bbox, centroid=measured.centroid, descriptors=measured.descriptors)
    return _Reported(record, item.centre, (a0, b0), refined, nucleus, heat)


#: what segment_field does with each found cell
PER_CELL = ("segment", "classify")


#: how each found cell's crop is white-balanced before it is segmented and classified (issue 22):
#: "off" (the crop as it is on the field), "into-range" (a slide colour outside the training
#: images' range is brought to the nearest colour in it, channel by channel; one inside is left
#: alone), "into-range-chroma" (its brightness and its hue brought into range separately: a
#: near-white scanner background is dimmed rather than tinted) or "to-reference" (every slide
#: brought to the training images' median slide colour); benchmarks/results/field_classifier_rule.md
WHITE_BALANCE = "into-range"
WHITE_BALANCE_MODES = ("off", "into-range", "to-reference", "into-range-chroma")
#: the modes in a sentence, for the CLI's help and the fields widget's tooltip
WHITE_BALANCE_DESCRIPTION = (
    "default: into-range for the bundled classifiers, off for a classifier of your own; into-range (a slide"
    " colour outside the training images' range is brought to the nearest colour in it, channel by channel),"
    " into-range-chroma (brightness and hue brought into range separately: better for a near-white scanned"
    " background), to-reference (every slide to their median colour) or off; grey images are never balanced,"
    " and the measurements always read the image's own pixels")
#: the median bare-slide RGB of the bundled classifier's training-split Herlev images, and their
#: 10th and 90th percentiles per channel, no mask read
#: (``python benchmarks/dev/reference_slide.py`` -> ``benchmarks/results/dev/reference_slide.md``)
REFERENCE_SLIDE_RGB = (177.7, 170.9, 180.5)
TRAINING_SLIDE_RANGE = ((137.7, 135.0, 156.0), (217.7, 200.2, 237.8))
#: the same slides' brightness (mean of R, G, B) and chromaticity (RGB / brightness), 10th and
#: 90th percentiles (``reference_slide.py``): "into-range-chroma" brings a slide's brightness and
#: its hue into range separately, so that a near-white scanner background is only dimmed, not tinted
TRAINING_SLIDE_BRIGHTNESS = (144.0, 214.8)
TRAINING_SLIDE_CHROMA = ((0.911, 0.903, 0.994), (1.078, 1.008, 1.159))
#: an image whose brightest common colour is darker than this (half the training slides' 10th
#: percentile brightness) shows no bare slide to balance by (dark-field, a crop inside a cell):
#: its crops are left as they are rather than multiplied many times over
MIN_SLIDE_BRIGHTNESS = TRAINING_SLIDE_BRIGHTNESS[0] / 2


def _checked_mode(mode: str) -> str:
    if mode not in WHITE_BALANCE_MODES:
        raise ValueError(f"white_balance = {mode!r}: one of {', '.join(WHITE_BALANCE_MODES)}")
    return mode


def white_balance_for(model, requested: str | None = None) -> str:
    """The white balance a field's crops get: ``requested`` when given; otherwise WHITE_BALANCE
    for the bundled classifiers (whose training slides TRAINING_SLIDE_RANGE describes) and for no
    classifier, and "off" for a classifier of one's own, whose training slides are not known (ask
    for a mode to balance its crops all the same)."""
    if requested is not None:
        return _checked_mode(requested)
    if model is None:
        return WHITE_BALANCE
    source = getattr(model, "source", model)
    if isinstance(source, str | Path):
        if str(source) == "default" or str(source) in bundled_models():
            return WHITE_BALANCE
        try:
            if Path(source).resolve().parent == WEIGHTS_DIR.resolve():
                return WHITE_BALANCE
        except OSError:
            pass
    return "off"


def white_balance_gains(rgb: np.ndarray, mode: str | None = None, slide: np.ndarray | None = None) -> np.ndarray | None:
    """Per-channel gains that bring the field's slide colour to what the networks were trained on
    (see WHITE_BALANCE; `mode` defaults to it), or None where nothing is to be done: mode "off",
    a grey image (no colour cast to undo), a slide already in range, no bare slide to be seen.

    A stained cell's colour is its transmittance times the slide's light (Beer-Lambert), so the
    same cell on a purple or a yellowish slide looks like a differently stained one to the
    networks; dividing out the slide's colour removes what the cell did not do. ``slide``: the
    image's ``segment.cells.slide_colour``, when already known."""
    mode = _checked_mode(WHITE_BALANCE if mode is None else mode)
    if mode == "off":
        return None
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000))))
    sub = rgb[::step, ::step]
    if np.array_equal(sub[..., 0], sub[..., 1]) and np.array_equal(sub[..., 1], sub[..., 2]):
        return None
    slide = np.maximum(slide_colour(rgb) if slide is None else np.asarray(slide, np.float64), 1.0)
    if slide.mean() < MIN_SLIDE_BRIGHTNESS:
        return None
    if mode == "to-reference":
        target = np.asarray(REFERENCE_SLIDE_RGB)
    elif mode == "into-range-chroma":
        brightness = slide.mean()
        target = (np.clip(slide / brightness, *np.asarray(TRAINING_SLIDE_CHROMA))
                  * np.clip(brightness, *TRAINING_SLIDE_BRIGHTNESS))
    else:
        target = np.clip(slide, *np.asarray(TRAINING_SLIDE_RANGE))
    gains = (target / slide).astype(np.float32)
    return None if np.allclose(gains, 1.0, atol=1e-3) else gains


def white_balanced(crop: np.ndarray, gains: np.ndarray | None) -> np.ndarray:
    """A crop with white_balance_gains applied (itself when gains is None)."""
    if gains is None:
        return crop
    return np.clip(crop.astype(np.float32) * gains, 0, 255).round().astype(np.uint8)


def _found_nuclei(found: list, shape) -> np.ndarray:
    """Every found nucleus by its index from 1, so that a nucleus of an overlapping neighbour is not
    taken for a second nucleus of a cell."""
    found_nuclei = np.zeros(shape, np.int32)
    for i, cell in enumerate(found, start=1):
        r0, c0, r1, c1 = cell.box
        found_nuclei[r0:r1, c0:c1][cell.nucleus] = i
    return found_nuclei


def _in_crop(cell, shape) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """A found cell's crop box (laid out like a training cell), and its extent and nucleus in it."""
    b0, b1, b2, b3 = cell.box
    r0, c0, r1, c1 = _crop_box((slice(b0, b2), slice(b1, b3)), shape)
    region = np.zeros((r1 - r0, c1 - c0), bool)
    region[b0 - r0:b2 - r0, b1 - c0:b3 - c0] = cell.extent
    seed = np.zeros_like(region)
    seed[b0 - r0:b2 - r0, b1 - c0:b3 - c0] = cell.nucleus
    return (r0, c0, r1, c1), region, seed


class _LabelPlanes:
    """The field's disjoint layers as cells are added: each pixel to the cell whose nucleus is
    nearest (the nucleus its own); the heatmap follows the cells' pixels."""

    def __init__(self, shape):
        self.cells = np.zeros(shape, np.int32)
        self.nuclei = np.zeros(shape, np.int32)
        self.nearest = np.full(shape, np.inf, np.float32)
        self.heatmap = np.zeros(shape, np.float32)

    def paint(self, cell_id: int, origin, region: np.ndarray, nucleus: np.ndarray, heatmap) -> None:
        r0, c0 = origin
        r1, c1 = r0 + region.shape[0], c0 + region.shape[1]
        distance = ndi.distance_transform_edt(~nucleus) if nucleus.any() else _distance_to_centre(region)
        take = region & (distance < self.nearest[r0:r1, c0:c1])
        self.nearest[r0:r1, c0:c1][take] = distance[take]
        self.cells[r0:r1, c0:c1][take] = cell_id
        nuclei_box = self.nuclei[r0:r1, c0:c1]
        nuclei_box[take & ~nucleus & (nuclei_box > 0)] = 0
        nuclei_box[take & nucleus] = cell_id
        if heatmap is not None:
            self.heatmap[r0:r1, c0:c1][take] = heatmap[take]

    def finished(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``cells``, ``nuclei``, the 0/1/2 ``labels`` and the ``heatmap``."""
        self.nuclei[self.cells == 0] = 0
        labels = np.zeros(self.cells.shape, np.uint8)
        labels[self.cells > 0] = 1
        labels[self.nuclei > 0] = 2
        return self.cells, self.nuclei, labels, self.heatmap


def _withhold_if_not_one_cell(record: CellRecord, result: SegmentationResult, region: np.ndarray,
                              nucleus: np.ndarray, seed: np.ndarray, found_nuclei: np.ndarray, own_index: int) -> None:
    """No verdict for a bare nucleus the classifier does not call abnormal, nor for a region holding
    several nuclei (several cells merged?); a bare nucleus's N/C ratio is noted as not reliable."""
    bare = nucleus.any() and (region & ~nucleus).sum() < BARE_NUCLEUS_CYTOPLASM * nucleus.sum()
    if bare:
        note = "no cytoplasm found around the nucleus: the N/C ratio is not reliable"
        record.descriptors["measure_notes"] = " | ".join(filter(None, [record.descriptors.get("measure_notes"), note]))
        if BARE_NUCLEUS_ABNORMAL_KEEPS_VERDICT and record.predicted_class == "abnormal":
            record.warnings.append("no cytoplasm found around this nucleus: called abnormal on its crop (scant"
                                   " cytoplasm, as in high-grade cells); its N/C ratio is not reliable")
        else:  # a nucleus without its cytoplasm is not enough to call a cell normal
            record.withhold("bare nucleus: no cytoplasm found",
                            "no cytoplasm found around this nucleus: no verdict (cells packed together?)")
    extra = max(_pieces(seed) - 1, len(_other_nuclei(result, region, nucleus, found_nuclei, own_index)))
    if extra:
        # a region with two nuclei may be two cells merged: no confident class, listed for review
        record.withhold(f"several cells: {extra + 1} nuclei in one region",
                        f"{extra + 1} nuclei in this cell's region: several cells? no verdict, review it")


#: the clump cytoplasm given to a cell is cropped, segmented and classified with it, as a lone
#: cell's missed cytoplasm is (benchmarks/results/finder_rule.md)
CROP_WITH_CLUMP_CYTOPLASM = True


def _with_missed_cytoplasm(cell):
    """A found cell whose box and extent include the cytoplasm its polygon missed
    (``FoundCell.missed``, and with CROP_WITH_CLUMP_CYTOPLASM its ``clump_missed``, which are then
    cleared): what is cropped, classified and reported of it (benchmarks/results/finder_rule.md)."""
    if CROP_WITH_CLUMP_CYTOPLASM and getattr(cell, "clump_missed", None) is not None:
        cell = _with_missed_cytoplasm(replace(cell, missed=_merged_missed(cell), clump_missed=None))
    missed = getattr(cell, "missed", None)
    if missed is None:
        return cell
    dr, dc, mask = missed
    r0, c0, r1, c1 = (int(v) for v in cell.box)
    m0, m1 = r0 + int(dr), c0 + int(dc)
    u0, u1 = min(r0, m0), min(c0, m1)
    u2, u3 = max(r1, m0 + mask.shape[0]), max(c1, m1 + mask.shape[1])
    extent = np.zeros((u2 - u0, u3 - u1), bool)
    extent[r0 - u0:r1 - u0, c0 - u1:c1 - u1] = cell.extent
    extent[m0 - u0:m0 - u0 + mask.shape[0], m1 - u1:m1 - u1 + mask.shape[1]] |= mask
    nucleus = np.zeros_like(extent)
    nucleus[r0 - u0:r1 - u0, c0 - u1:c1 - u1] = cell.nucleus
    clump = getattr(cell, "clump_missed", None)
    if clump is not None:  # its offsets follow the box
        clump = (clump[0] + r0 - u0, clump[1] + c0 - u1, clump[2])
        return replace(cell, box=(u0, u1, u2, u3), extent=extent, nucleus=nucleus, missed=None, clump_missed=clump)
    return replace(cell, box=(u0, u1, u2, u3), extent=extent, nucleus=nucleus, missed=None)


def _merged_missed(cell) -> tuple[int, int, np.ndarray]:
    """A cell's ``missed`` and ``clump_missed`` as one (row, col, mask) offset from its box."""
    parts = [p for p in (cell.missed, cell.clump_missed) if p is not None]
    r0 = min(p[0] for p in parts)
    c0 = min(p[1] for p in parts)
    r1 = max(p[0] + p[2].shape[0] for p in parts)
    c1 = max(p[1] + p[2].shape[1] for p in parts)
    mask = np.zeros((r1 - r0, c1 - c0), bool)
    for dr, dc, m in parts:
        mask[dr - r0:dr - r0 + m.shape[0], dc - c0:dc - c0 + m.shape[1]] |= m
    return r0, c0, mask


def _with_clump_cytoplasm(cell, crop_box, region: np.ndarray, nucleus: np.ndarray, heatmap):
    """(box, region, nucleus, heatmap) of what is reported of a cell: its crop's ``region`` with the
    clump cytoplasm given to it and not cropped (``FoundCell.clump_missed``, left only when
    CROP_WITH_CLUMP_CYTOPLASM is off), in a box holding both; the nucleus and heatmap are the
    crop's, placed in it."""
    clump = getattr(cell, "clump_missed", None)
    if clump is None:
        return crop_box, region, nucleus, heatmap
    r0, c0, r1, c1 = crop_box
    dr, dc, mask = clump
    m0, m1 = cell.box[0] + int(dr), cell.box[1] + int(dc)
    u0, u1 = min(r0, m0), min(c0, m1)
    u2, u3 = max(r1, m0 + mask.shape[0]), max(c1, m1 + mask.shape[1])

    def placed(array, fill):
        out = np.full((u2 - u0, u3 - u1), fill, array.dtype)
        out[r0 - u0:r1 - u0, c0 - u1:c1 - u1] = array
        return out

    reported = placed(region, False)
    reported[m0 - u0:m0 - u0 + mask.shape[0], m1 - u1:m1 - u1 + mask.shape[1]] |= mask
    return ((u0, u1, u2, u3), reported, placed(nucleus, False),
            None if heatmap is None else placed(np.asarray(heatmap, np.float32), 0.0))


def _extent(region: np.ndarray, origin) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """A cell's full extent in the field: its box and the bool mask of that box."""
    rows, cols = np.nonzero(region)
    e0, e1, e2, e3 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    o0, o1 = int(origin[0]), int(origin[1])  # plain ints: boxes go into JSON (slide journals, GeoJSON)
    return ((o0 + int(e0), o1 + int(e1), o0 + int(e2), o1 + int(e3)),
            region[e0:e2, e1:e3].copy())


def _coverage_warnings(cells: np.ndarray, stained: np.ndarray) -> list[str]:
    """A warning when little of the stained area (the field's ``foreground_mask``) lies in a found
    cell (cells missed)."""
    covered = float((stained & (cells > 0)).sum() / max(1, stained.sum()))
    if stained.sum() >= MIN_CELL_AREA and covered < MIN_COVERED_FOREGROUND:
        return [(f"only {covered:.0%} of the stained area lies in a found cell: cells may have been"
                " missed (a crowded field, or cells without a visible nucleus); check the outlines")]
    return []


def _judge(record: CellRecord, result: SegmentationResult) -> None:
    """A cell's class, p(abnormal), explained class and reasons for no verdict, from the result of its crop."""
    p_abnormal = result.probabilities.get("abnormal") if result.probabilities else None
    record.predicted_class, record.probability = result.predicted_class, result.probability
    record.p_abnormal = None if p_abnormal is None else float(p_abnormal)
    record.explained_class = result.explained_class
    record.judgeable, record.not_judgeable = result.judgeable, list(result.not_judgeable)
    record.warnings = [w for w in result.warnings if not w.startswith("option ")]


def classify_found_cell(crop: np.ndarray, region: np.ndarray, seed: np.ndarray, model_obj,
                        operating_point=None) -> SegmentationResult:
    """A found cell as the finder outlined it (labels from its extent and nucleus), with the
    classifier's verdict on its crop and the applicability check; no heatmap."""
    labels = np.zeros(region.shape, np.uint8)
    labels[region] = 1
    labels[region & seed] = 2
    cls = prob = None
    probs: dict = {}
    if model_obj is not None:
        cls, prob, probs = classify(model_obj, crop, operating_point=operating_point)
    result = SegmentationResult(labels=labels, rough=labels.copy(), heatmap=None, method="finder",
                                algorithm="none", predicted_class=cls, probability=prob, probabilities=probs,
                                model=getattr(model_obj, "source", None))
    give_verdict(result, model_obj, crop, labels)
    return result


def _distance_to_centre(region: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(region)
    rr, cc = np.indices(region.shape)
    return np.hypot(rr - rows.mean(), cc - cols.mean()).astype(np.float32)


#: a found cell whose cytoplasm is smaller than this fraction of its nucleus is a bare nucleus
BARE_NUCLEUS_CYTOPLASM = 0.1
#: a bare nucleus the classifier calls abnormal keeps that call, with a warning (scant cytoplasm is
#: what high-grade cells show: on the validation compositions all 18 bare nuclei lay on abnormal
#: cells; benchmarks/results/field_classifier_rule.md, session 12); one called normal gets no verdict
BARE_NUCLEUS_ABNORMAL_KEEPS_VERDICT = True
#: a field whose stained area is covered by found cells less than this gets a warning
MIN_COVERED_FOREGROUND = 0.6


#: a second nucleus in a cell's region counts when it is at least this fraction of the cell's own
#: nucleus and at least MIN_SECOND_NUCLEUS px (smaller: a chromatin clump, a speck)
SECOND_NUCLEUS_FRACTION = 0.3
MIN_SECOND_NUCLEUS = 60


def _pieces(nucleus: np.ndarray) -> int:
    """How many separate nuclei a found nucleus mask holds (pieces of nucleus size: at least
    MIN_SECOND_NUCLEUS px and SECOND_NUCLEUS_FRACTION of the largest): a finder that merged two
    cells gives one cell two nuclei."""
    parts, n = ndi.label(nucleus)
    if n < 2:
        return n
    sizes = np.bincount(parts.ravel())[1:]
    return int((sizes >= max(MIN_SECOND_NUCLEUS, SECOND_NUCLEUS_FRACTION * sizes.max())).sum())


def _other_nuclei(result: SegmentationResult, region: np.ndarray, nucleus: np.ndarray, found_nuclei: np.ndarray,
                  own_index: int) -> list[np.ndarray]:
    """The nuclei the crop's segmentation shows inside this cell's region besides its own (a mask
    of the crop each), leaving out the nuclei of other found cells (those lie over or under it:
    overlap, not a merge)."""
    if not nucleus.any():
        return []
    parts, n = ndi.label((result.labels == 2) & region & ~ndi.binary_dilation(nucleus, iterations=2))
    if n == 0:
        return []
    own_area = int(nucleus.sum())
    others = []
    for k, box in enumerate(ndi.find_objects(parts), start=1):
        part = parts[box] == k
        area = int(part.sum())
        if area < max(MIN_SECOND_NUCLEUS, SECOND_NUCLEUS_FRACTION * own_area):
            continue
        under = found_nuclei[box][part]
        if ((under > 0) & (under != own_index)).mean() > 0.3:
            continue  # another found cell's nucleus
        others.append(parts == k)
    return others


#: abnormal cells are boxed in this colour (RGB) in overlays
ABNORMAL_COLOUR = (230, 20, 20)
#: the overlay's mark of a nucleus left out (FieldResult.left_out): orange, as in napari
LEFT_OUT_COLOUR = (255, 165, 0)


def field_overlay(image, result: FieldResult, alpha: float = 0.45) -> np.ndarray:
    """The labels over the image with each cell's outline, a red box, id and p(abnormal) on every
    cell called abnormal, and an orange circle on each nucleus left out (:attr:`FieldResult.left_out`)."""
    picture = overlay(image, result.labels, alpha)
    edges = cv2.morphologyEx(result.cells.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    picture[edges] = (255, 255, 255)
    scale = max(0.4, min(picture.shape[:2]) / 1200)
    for record in result.records:
        if record.predicted_class != "abnormal":
            continue
        r0, c0, r1, c1 = record.bbox
        thickness = max(2, int(round(2 * scale)))
        cv2.rectangle(picture, (c0, r0), (c1 - 1, r1 - 1), ABNORMAL_COLOUR, thickness)
        text = f"{record.cell_id} abnormal {record.p_abnormal:.2f}"
        cv2.putText(picture, text, (c0 + 2, max(12, r0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                    ABNORMAL_COLOUR, max(1, thickness // 2), cv2.LINE_AA)
    for row, col in result.left_out:
        cv2.circle(picture, (int(round(col)), int(round(row))), max(6, int(round(8 * scale))), LEFT_OUT_COLOUR,
                   max(2, int(round(2 * scale))))
    return picture


def field_from_boxes(image, boxes, results, pixel_size: float | None = None) -> FieldResult:
    """Instance labels and per-cell rows from cells segmented in rectangles (one result per box).

    Where rectangles overlap, a pixel that several boxes' cells claim goes to the box whose centre
    is nearest, so a cell's descriptors never count a neighbour's pixels.

    Parameters
    ----------
    image : ndarray
        The whole image.
    boxes : sequence of (r0, c0, r1, c1)
    results : sequence of SegmentationResult or None
        ``results[i]`` belongs to ``boxes[i]`` (None: that box failed, no cell).
    pixel_size : float, optional

    Returns
    -------
    FieldResult
        Cell ``i + 1`` is box ``i``'s cell.
    """
    rgb, _ = to_rgb_uint8(image)
    h, w = rgb.shape[:2]
    cells = np.zeros((h, w), np.int32)
    nuclei = np.zeros((h, w), np.int32)
    heatmap = np.zeros((h, w), np.float32)
    nearest = np.full((h, w), np.inf, np.float32)
    judged: dict[int, SegmentationResult] = {}
    for i, ((r0, c0, r1, c1), result) in enumerate(zip(boxes, results, strict=True), start=1):
        if result is None or not result.cell_found:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        distance = np.hypot(rr - (r0 + r1) / 2, cc - (c0 + c1) / 2).astype(np.float32)
        take = (result.labels > 0) & (distance < nearest[r0:r1, c0:c1])
        nearest[r0:r1, c0:c1][take] = distance[take]
        cells[r0:r1, c0:c1][take] = i
        nuclei_box = nuclei[r0:r1, c0:c1]
        nuclei_box[take & (result.labels == 2)] = i
        nuclei_box[take & (result.labels != 2)] = 0
        if result.heatmap is not None:
            heatmap[r0:r1, c0:c1][take] = result.heatmap[take]
        judged[i] = result
    nuclei[cells == 0] = 0
    records = []
    for k, box in enumerate(ndi.find_objects(cells), start=1):
        if box is None:
            continue
        record = _cell_record(k, cells[box] == k, nuclei[box] == k, rgb[box], (box[0].start, box[1].start),
                              pixel_size)
        _judge(record, judged[k])
        records.append(record)
    labels = np.zeros((h, w), np.uint8)
    labels[cells > 0] = 1
    labels[nuclei > 0] = 2
    done = [r for r in results if r is not None]
    return FieldResult(cells=cells, nuclei=nuclei, labels=labels, heatmap=heatmap, records=records,
                       method=done[0].method if done else DEFAULT_SEGMENT_METHOD,
                       model=done[0].model if done else None, settings=done[0].settings if done else {},
                       finder="boxes")
