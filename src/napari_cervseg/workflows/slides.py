"""Whole slides: the field route over level-0 tiles, in parallel with Dask, resumable.

A slide is cut into a grid of square tiles (``tile`` level-0 px). Each tile is read with a
``margin`` of context on every side and segmented with :func:`segment_field` restricted
(``within=``) to the cells whose centre lies in the tile itself: a cell on a tile border is
segmented by the tile that owns its centre (and, within OWNERSHIP_SLACK px of the border, by its
neighbour too: the merge keeps it once), with its whole extent in view when it is smaller than
the margin. Each finished tile is written to ``OUT/tiles/`` at once (atomically); a run that
is killed and started again skips those tiles, so nothing finished is redone or lost. Tiles with no
stained pixel on a low-resolution level are recorded as empty without being read at full size.
When every tile is done the tiles are merged into one table and its outputs
(:mod:`napari_cervseg.workflows.slide_outputs`).

Memory is bounded by the tile, whatever the slide's size: a task reads its own region only, and the
merge keeps one row and one outline per cell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..classify import load_model
from ..io.images import check_pixel_size, to_rgb_uint8, write_text_atomic
from ..io.slides import Slide, open_slide
from ..measure.records import BBOX, CELL_ID, CENTROID, WARNINGS
from ..segment.cells import stained_mask
from ..segment.pipeline import check_request
from ..segment.settings import DEFAULT_SEGMENT_METHOD
from ..stages import ProgressCallback, StopCheck, report_count
from .fields import (
    DEFAULT_FINDER,
    FIELD_MODEL,
    extent_outline,
    field_model,
    segment_field,
    white_balance_for,
)
from .run_folder import folder_lock
from .slide_outputs import OUTPUT_NAMES, class_counts, write_outputs

TILES = "tiles"
RUN_CARD = "slide_run.json"
#: a tile segments the cells whose centre lies in its box grown by this (px): a cell centred on a
#: border may be seen a few pixels to either side by the two tiles, and must not fall between them
OWNERSHIP_SLACK = 24
#: two cells from neighbouring tiles are one cell seen twice when their nucleus centres are closer
#: than this (px) or their boxes overlap by more than DUPLICATE_BOX_IOU
DUPLICATE_DISTANCE = 12.0
DUPLICATE_BOX_IOU = 0.6
#: the level looked at for empty tiles is the first at least this many times smaller than level 0
THUMBNAIL_DOWNSAMPLE = 16
#: a level larger than this (px) is not read whole to look for empty tiles
MAX_THUMBNAIL_PIXELS = 4096 * 4096


#: a slide worker's peak resident memory, MB, rounded up: 1,408 MB measured on 2304 px tiles with
#: per-cell segmentation (benchmarks/results/dev/finder_net_memory.md); the 10,000^2 slide's
#: process tree, two workers and the main process, peaks at 3.5 GB (slide_10000_segment.md)
SLIDE_WORKER_MB = 1500
#: what the main process holds while the workers run (the package and its model loaded), MB
SLIDE_MAIN_MB = 700


def auto_slide_workers(cpus: int | None = None, available_mb: float | None = None) -> int:
    """Worker processes for ``cervseg slide --workers auto``: one per CPU core, as many as the
    memory available now holds (SLIDE_WORKER_MB each beside SLIDE_MAIN_MB), at least one."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if available_mb is None:
        import psutil  # (a dependency of dask.distributed)

        available_mb = psutil.virtual_memory().available / 2**20
    by_memory = int((available_mb - SLIDE_MAIN_MB) // SLIDE_WORKER_MB)
    return max(1, min(int(cpus), by_memory))


class SlideRunError(RuntimeError):
    """A slide run that cannot start or resume (the message names why and what would work)."""


@dataclass(frozen=True)
class SlideConfig:
    """How a slide is processed. Changing any of these makes a different run: a folder holding
    another configuration's tiles is refused rather than mixed.

    Attributes
    ----------
    tile : int
        Tile side in level-0 pixels (256-16384). The default 2304 with the 384 px margin reads
        3072 px squares, which the classic cell finder takes in one pass (a larger region is
        searched in overlapping parts, which costs more per pixel).
    margin : int
        Context read around each tile (px); wider than the largest cell.
    model, method, finder, operating_point
        As for :func:`~napari_cervseg.segment_field`; ``model`` is a bundled name or a file
        (each worker loads it once), ``"none"`` for the colour baseline; ``"default"`` is stored as
        the field route's classifier (:data:`~napari_cervseg.workflows.fields.FIELD_MODEL`), so a
        folder made when "default" meant another classifier is refused rather than mixed.
    pixel_size : float, optional
        µm per pixel for the descriptors (default: the slide's own metadata, when it has one).
    skip_empty : bool
        Record tiles without a stained pixel at low resolution as empty without reading them.
    per_cell : {"segment", "classify"}
        As for :func:`~napari_cervseg.segment_field`: ``"segment"`` (default) segments every
        cell; ``"classify"`` keeps the finder's outline and nucleus and calls each cell on its
        crop (about twice as fast, but without the second-nucleus flags the segmentation gives);
        the gallery's cells get their heatmaps afterwards either way.
    white_balance : {"into-range", "into-range-chroma", "to-reference", "off"}
        As for :func:`~napari_cervseg.segment_field` (default: into-range for the bundled
        classifiers, off for one's own; ``"into-range-chroma"`` for a near-white scanned background). A folder made before this
        setting existed (its crops were not balanced) is resumed only with ``"off"``.
    """

    tile: int = 2304
    margin: int = 384
    model: str = FIELD_MODEL
    method: str = DEFAULT_SEGMENT_METHOD
    finder: str = DEFAULT_FINDER
    operating_point: str | float | None = "screening"
    pixel_size: float | None = None
    skip_empty: bool = True
    per_cell: str = "segment"
    white_balance: str | None = None

    def __post_init__(self):
        # the run's card names the classifier that calls the cells: "default" is the field route's
        # (FIELD_MODEL), so a run made when "default" meant another one is not resumed with this one
        object.__setattr__(self, "model", field_model(self.model))
        # and the white balance its crops get (for a classifier of one's own: off unless asked)
        object.__setattr__(self, "white_balance", white_balance_for(self.model, self.white_balance))

    def check(self) -> SlideConfig:
        if not isinstance(self.tile, int) or not 256 <= self.tile <= 16384:
            raise ValueError(f"tile = {self.tile!r}: a tile is 256 to 16384 level-0 pixels (default 2304)")
        if not isinstance(self.margin, int) or not 0 <= self.margin <= self.tile:
            raise ValueError(f"margin = {self.margin!r}: the context around a tile is 0 to tile ({self.tile}) px;"
                             " make it wider than the largest cell (384 for Herlev-sized cells)")
        check_pixel_size(self.pixel_size)
        if self.per_cell not in ("classify", "segment"):
            raise ValueError(f"per_cell = {self.per_cell!r}: 'classify' (the finder's outlines, fast) or 'segment'")
        return self


@dataclass(frozen=True)
class TileSpec:
    """One tile: its grid position and the level-0 box it owns."""

    row: int
    col: int
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def name(self) -> str:
        return f"r{self.row:04d}_c{self.col:04d}"


def tile_grid(shape: tuple[int, int], tile: int) -> list[TileSpec]:
    """The tiles covering a (height, width) slide, row by row."""
    h, w = shape
    return [TileSpec(r, c, y, x, min(h, y + tile), min(w, x + tile))
            for r, y in enumerate(range(0, h, tile)) for c, x in enumerate(range(0, w, tile))]


@dataclass
class SlideResult:
    """A finished (or stopped) slide run: one row per cell, in slide (level-0) coordinates.

    Attributes
    ----------
    slide : str
        The slide's path.
    shape : (int, int)
        Level 0's height and width.
    out : Path
        The run's folder (tiles, table, GeoJSON, report).
    cells : list of dict
        One record per cell: ``cell_id``, ``y``, ``x`` (centroid), ``bbox``, ``outline`` and
        ``nucleus_outline`` ([[x, y], ...]), class, ``p_abnormal``, the reason for no verdict and
        the descriptors.
    tiles_done, tiles_total : int
        Finished tiles; the outputs are written once every tile is done.
    seconds : float
        Wall time of this call.
    warnings : list of str
        Each tile's notes, and what is left to do when stopped.
    left_out : list of [y, x]
        Found nuclei left out as not cells
        (:attr:`~napari_cervseg.workflows.fields.FieldResult.left_out`), slide coordinates.
    """

    slide: str
    shape: tuple[int, int]
    out: Path
    cells: list[dict]
    tiles_done: int
    tiles_total: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    left_out: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.tiles_done == self.tiles_total

    def summary(self) -> dict:
        return {"slide": self.slide, "shape": list(self.shape), "tiles_done": self.tiles_done,
                "tiles_total": self.tiles_total, "n_cells": len(self.cells), **class_counts(self.cells),
                "n_left_out": len(self.left_out),
                "seconds": round(self.seconds, 2), "warnings": self.warnings}


# --- one tile -------------------------------------------------------------------------------

_MODELS: dict = {}


def _model(spec: str):
    """One loaded classifier per worker process (a tile task reuses it); ``spec`` is a SlideConfig's
    model, where "default" is already the field route's classifier."""
    if spec is None or str(spec).lower() in ("none", ""):
        return None  # the colour baseline needs no classifier
    if spec not in _MODELS:
        _MODELS[spec] = load_model(spec)
    return _MODELS[spec]


def _contour_points(box, mask: np.ndarray) -> list[list[float]]:
    """A mask's outer outline as [[x, y], ...] in slide pixels (GeoJSON's order), closed."""
    points = extent_outline(box, mask)  # (row, col) vertices
    ring = [[round(float(c), 1), round(float(r), 1)] for r, c in points]
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def segment_tile(slide: Slide, spec: TileSpec, config: SlideConfig) -> dict:
    """Segment the cells a tile owns; returns its journal record (rows in slide coordinates)."""
    t0 = time.perf_counter()
    h, w = slide.shape
    m = config.margin
    ry0, rx0, ry1, rx1 = max(0, spec.y0 - m), max(0, spec.x0 - m), min(h, spec.y1 + m), min(w, spec.x1 + m)
    region = slide.read(ry0, rx0, ry1, rx1)
    result = segment_field(region, model=_model(config.model), method=config.method, finder=config.finder,
                           operating_point=config.operating_point, pixel_size=config.pixel_size,
                           per_cell=config.per_cell, white_balance=config.white_balance,
                           within=(spec.y0 - ry0 - OWNERSHIP_SLACK, spec.x0 - rx0 - OWNERSHIP_SLACK,
                                   spec.y1 - ry0 + OWNERSHIP_SLACK, spec.x1 - rx0 + OWNERSHIP_SLACK))
    cells = []
    for cell in result.records:
        cell_id = cell.cell_id
        box, mask = result.extent(cell_id)
        nucleus_ring = []
        nucleus = result.nuclei[box[0]:box[2], box[1]:box[3]] == cell_id
        if nucleus.any():
            nucleus_ring = _contour_points((ry0 + box[0], rx0 + box[1]), nucleus)
        y0, x0, y1, x1 = box
        cy, cx = cell.centroid
        record = {k: v for k, v in cell.row().items() if k not in (CELL_ID, BBOX, CENTROID, WARNINGS)}
        record.update(tile=spec.name, y=ry0 + float(cy), x=rx0 + float(cx),
                      bbox=[ry0 + y0, rx0 + x0, ry0 + y1, rx0 + x1],
                      nucleus_centre=_nucleus_centre(nucleus, (ry0 + y0, rx0 + x0)),
                      outline=_contour_points((ry0 + y0, rx0 + x0), mask), nucleus_outline=nucleus_ring,
                      notes="; ".join(cell.warnings))
        cells.append(record)
    return {"tile": spec.name, "box": [spec.y0, spec.x0, spec.y1, spec.x1], "cells": cells,
            "left_out": [[ry0 + float(r), rx0 + float(c)] for r, c in result.left_out],
            "warnings": [w for w in result.warnings if not w.startswith("only ")],
            "seconds": round(time.perf_counter() - t0, 3)}


def _nucleus_centre(nucleus: np.ndarray, origin) -> list[float] | None:
    if not nucleus.any():
        return None
    rr, cc = np.nonzero(nucleus)
    return [origin[0] + float(rr.mean()), origin[1] + float(cc.mean())]


def run_tile(slide_path: str, spec: TileSpec, config: SlideConfig, out: str, torch_threads: int | None = None) -> dict:
    """A worker's task: open the slide, segment one tile, write its record atomically; returns
    a short summary (the record stays on disk, so results never travel through the scheduler)."""
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    with open_slide(slide_path) as slide:
        record = segment_tile(slide, spec, config)
    _write_json_atomic(Path(out) / TILES / f"{spec.name}.json", record)
    return {"tile": spec.name, "n_cells": len(record["cells"]), "seconds": record["seconds"]}


def _write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, separators=(",", ":")))


# --- which tiles hold cells -----------------------------------------------------------------------

def stained_tiles(slide: Slide, grid: list[TileSpec], margin: int) -> set[str]:
    """Names of the tiles (with their margin) holding any stained pixel on the slide's first level
    at least THUMBNAIL_DOWNSAMPLE times smaller (or its smallest level, if that fits in
    MAX_THUMBNAIL_PIXELS; else every tile)."""
    choices = [k for k, d in enumerate(slide.downsamples) if d >= THUMBNAIL_DOWNSAMPLE]
    level = choices[0] if choices else len(slide.levels) - 1  # else the smallest there is ...
    if np.prod(slide.levels[level].shape[:2]) > MAX_THUMBNAIL_PIXELS:
        return {spec.name for spec in grid}  # ... when it is small enough to read whole
    thumb, _ = to_rgb_uint8(slide.read(0, 0, *slide.levels[level].shape[:2], level=level))
    # a 3 x 3 opening drops the slide's noise pixels; a cell at 1/16 is still 5-20 px wide
    stained = cv2.morphologyEx(stained_mask(thumb).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    sy, sx = slide.shape[0] / stained.shape[0], slide.shape[1] / stained.shape[1]
    keep = set()
    for spec in grid:
        y0, x0 = int((spec.y0 - margin) / sy), int((spec.x0 - margin) / sx)
        y1, x1 = int(np.ceil((spec.y1 + margin) / sy)), int(np.ceil((spec.x1 + margin) / sx))
        if stained[max(0, y0):y1, max(0, x0):x1].any():
            keep.add(spec.name)
    return keep


# --- the run ---------------------------------------------------------------------------------------

def _slide_identity(path: Path, slide: Slide) -> dict:
    stat = path.stat()
    head = hashlib.sha256()
    with open(path, "rb") as fh:
        head.update(fh.read(1 << 20))
    return {"name": path.name, "size": stat.st_size, "shape": list(slide.shape), "head_sha256": head.hexdigest()}


#: what a run card written before these settings existed did (its crops were not white-balanced)
SETTINGS_BEFORE_THEY_EXISTED = {"white_balance": "off"}


def _start_or_resume(out: Path, identity: dict, config: SlideConfig, slide_path: Path) -> None:
    card_path = out / RUN_CARD
    card = {"slide": identity, "config": asdict(config), "path": str(slide_path.resolve())}
    if card_path.exists():
        try:
            previous = json.loads(card_path.read_text())
        except (OSError, ValueError) as exc:
            raise SlideRunError(f"{card_path} cannot be read ({exc}); it is not a cervseg slide run's card."
                                " Choose another --out") from exc
        if not isinstance(previous, dict) or previous.get("slide") != identity:
            raise SlideRunError(f"{out} holds a run of another slide ({(previous or {}).get('slide', {}).get('name')});"
                                " choose another --out")
        # a run card written before a setting existed ran as that setting's "off" value did
        before = {**SETTINGS_BEFORE_THEY_EXISTED, **(previous.get("config") or {})}
        if before != card["config"]:
            # with the values, since a changed default (e.g. the finder) changes a run without a flag
            changed = [f"{k}: {before.get(k)!r} there, {card['config'][k]!r} now" for k in sorted(card["config"])
                       if before.get(k) != card["config"][k]]
            raise SlideRunError(f"{out} holds this slide's run with other settings ({'; '.join(changed)});"
                                " resume with the same settings, or choose another --out")
        return
    theirs = [name for name in OUTPUT_NAMES + (TILES,) if (out / name).exists()]
    if theirs:  # a folder without our card: these files are someone else's, never replaced
        raise SlideRunError(f"{out} holds {', '.join(theirs)} but no slide run's card ({RUN_CARD}); a run would"
                            " replace them. Choose another --out (or an empty folder)")
    (out / TILES).mkdir(parents=True, exist_ok=True)
    _write_json_atomic(card_path, card)


def _finished_tiles(out: Path) -> set[str]:
    done = set()
    for path in (out / TILES).glob("r*_c*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged record is redone
        if isinstance(record, dict) and record.get("tile") == path.stem:
            done.add(path.stem)
    return done


def segment_slide(slide_path, out, config: SlideConfig | None = None, *, workers: int = 2,
                  scheduler: str = "processes", progress: ProgressCallback | None = None,
                  should_stop: StopCheck | None = None, gallery: int = 24) -> SlideResult:
    """Find, segment, classify and measure every cell of a slide, tile by tile, resumably.

    Parameters
    ----------
    slide_path : path
        A pyramidal / tiled TIFF or OME-TIFF (or an OpenSlide format with OpenSlide installed).
    out : path
        Output folder: ``tiles/`` (one record per finished tile; delete it to start over),
        then ``cells.parquet``, ``cells.csv``, ``cells.geojson``, ``report.html``, ``summary.json``.
    config : SlideConfig
        Tile size, margin, model, method, finder, operating point, pixel size.
    workers : int
        Parallel tile tasks (local processes or threads).
    scheduler : {"processes", "threads", "sync"} or address
        Dask's local schedulers, or the address of a Dask distributed scheduler
        (``tcp://host:8786``; its workers must see the slide and `out` at the same paths).
    progress : callable, optional
        ``progress(stage, fraction)`` after each tile (``"3 of 12 tiles"``, the fraction of tiles
        finished), as every long call of the package reports (:mod:`napari_cervseg.stages`).
    should_stop : callable, optional
        Checked between tiles; finished tiles are kept and a later call resumes.
    gallery : int
        How many of the most suspicious cells get a thumbnail and heatmap in the report.

    Returns
    -------
    SlideResult
        Every cell found so far; ``complete`` when every tile is done (the outputs are then
        written).

    Examples
    --------
    >>> from napari_cervseg import segment_slide, SlideConfig  # doctest: +SKIP
    >>> result = segment_slide("slide.ome.tif", "slide-out", SlideConfig(tile=2048))  # doctest: +SKIP
    >>> result.summary()["n_abnormal"]  # doctest: +SKIP
    """
    config = (config or SlideConfig()).check()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers = {workers!r}: at least 1")
    slide_path = Path(slide_path)
    out = Path(out)
    t0 = time.perf_counter()
    # a bad method, model file or operating point stops here, before any tile
    check_request(_model(config.model), config.method, operating_point=config.operating_point,
                  pixel_size=config.pixel_size)
    with open_slide(slide_path) as slide:
        if config.pixel_size is None and slide.mpp:
            config = replace(config, pixel_size=float(slide.mpp))  # descriptors in µm as the slide says
        identity = _slide_identity(slide_path, slide)
        grid = tile_grid(slide.shape, config.tile)
        out.mkdir(parents=True, exist_ok=True)
        with folder_lock(out):
            _start_or_resume(out, identity, config, slide_path)
            done = _finished_tiles(out)
            todo = [spec for spec in grid if spec.name not in done]
            if config.skip_empty and todo:
                stained = stained_tiles(slide, todo, config.margin)
                for spec in todo:
                    if spec.name not in stained:
                        _write_json_atomic(out / TILES / f"{spec.name}.json",
                                           {"tile": spec.name, "box": [spec.y0, spec.x0, spec.y1, spec.x1],
                                            "cells": [], "warnings": [], "seconds": 0.0, "empty": True})
                        done.add(spec.name)
                todo = [spec for spec in todo if spec.name in stained]
            report_count(progress, len(done), len(grid), "tiles")
            stopped = _run_tiles(str(slide_path), todo, config, out, workers, scheduler, len(done), len(grid),
                                 progress, should_stop)
            done = _finished_tiles(out)
            cells, warnings, left_out = merge_tiles(out, grid)
            if stopped or len(done) < len(grid):
                warnings.append(f"stopped after {len(done)} of {len(grid)} tiles; run again with the same"
                                " --out to finish (finished tiles are kept)")
            result = SlideResult(slide=str(slide_path), shape=slide.shape, out=out, cells=cells,
                                 tiles_done=len(done), tiles_total=len(grid),
                                 seconds=time.perf_counter() - t0, warnings=warnings, left_out=left_out)
            if result.complete:
                write_outputs(result, slide, config, _model(config.model), gallery=gallery)
    return result


def _run_tiles(slide_path: str, todo: list[TileSpec], config: SlideConfig, out: Path, workers: int,
               scheduler: str, n_done: int, total: int, progress, should_stop) -> bool:
    """Run the tile tasks; True when stopped early. Finished tiles are on disk either way."""
    if not todo:
        return False
    if scheduler == "sync" or (workers == 1 and scheduler in ("threads", "processes")):
        for spec in todo:
            if should_stop is not None and should_stop():
                return True
            run_tile(slide_path, spec, config, str(out))
            n_done += 1
            report_count(progress, n_done, total, "tiles")
        return False
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SlideRunError("parallel tiles need dask.distributed: pip install 'napari-cervseg[dask]',"
                            " or run with workers=1") from exc
    if scheduler in ("threads", "processes"):
        # one torch thread per worker process, so that `workers` processes share the cores
        # instead of fighting over them
        with contextlib.ExitStack() as stack:
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1,
                                                       processes=scheduler == "processes",
                                                       dashboard_address=None))
            client = stack.enter_context(Client(cluster))
            return _run_client(client, slide_path, todo, config, out, 1 if scheduler == "processes" else None,
                               n_done, total, progress, should_stop)
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise SlideRunError(f"no Dask scheduler answers at {scheduler!r} ({exc}); start one (dask scheduler)"
                            " or use --scheduler processes") from exc
    with client:
        return _run_client(client, slide_path, todo, config, out, 1, n_done, total, progress, should_stop)


def _run_client(client, slide_path, todo, config, out, threads, n_done, total, progress, should_stop) -> bool:
    """Submit every tile, report each as it finishes; on stop, cancel the rest (finished tiles stay)."""
    from distributed import as_completed

    futures = [client.submit(run_tile, slide_path, spec, config, str(out), threads,
                             key=f"cervseg-tile-{spec.name}-{os.urandom(4).hex()}", pure=False) for spec in todo]
    try:
        for future in as_completed(futures):
            future.result()  # a failed tile stops the run with its error; finished tiles stay
            n_done += 1
            report_count(progress, n_done, total, "tiles")
            if should_stop is not None and should_stop():
                return True
    finally:
        client.cancel(futures)
    return False


def _box_iou(a, b) -> float:
    dy = min(a[2], b[2]) - max(a[0], b[0])
    dx = min(a[3], b[3]) - max(a[1], b[1])
    if dy <= 0 or dx <= 0:
        return 0.0
    inter = dy * dx
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _same_cell(a: dict, b: dict) -> bool:
    ca = a.get("nucleus_centre") or [a["y"], a["x"]]
    cb = b.get("nucleus_centre") or [b["y"], b["x"]]
    return float(np.hypot(ca[0] - cb[0], ca[1] - cb[1])) < DUPLICATE_DISTANCE or \
        _box_iou(a["bbox"], b["bbox"]) > DUPLICATE_BOX_IOU


def merge_tiles(out: Path, grid: list[TileSpec]) -> tuple[list[dict], list[str], list[list[float]]]:
    """Every finished tile's cells in one list, in tile order, numbered 1..n; the tiles' notes; and
    the nuclei they left out ([y, x]; a journal written before these were recorded has none).
    Tiles overlap by OWNERSHIP_SLACK around their borders; a cell found again by a neighbouring
    tile (the same nucleus, or nearly the same box) is kept once, from the first tile, and so is
    a left-out nucleus (centres closer than DUPLICATE_DISTANCE)."""
    cells: list[dict] = []
    warnings: list[str] = []
    left_out: list[list[float]] = []
    by_tile: dict[tuple[int, int], tuple[list[dict], list[list[float]]]] = {}
    for spec in grid:
        path = out / TILES / f"{spec.name}.json"
        with contextlib.suppress(FileNotFoundError):
            record = json.loads(path.read_text())
            neighbours = [by_tile[(spec.row + dr, spec.col + dc)] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                          if (dr or dc) and (spec.row + dr, spec.col + dc) in by_tile]
            kept = []
            for cell in record["cells"]:
                if any(_same_cell(cell, other) for near, _ in neighbours for other in near):
                    continue
                cell["cell_id"] = len(cells) + 1
                cells.append(cell)
                kept.append(cell)
            points = [[float(y), float(x)] for y, x in record.get("left_out", [])
                      if not any(math.hypot(y - py, x - px) < DUPLICATE_DISTANCE
                                 for _, near in neighbours for py, px in near)]
            left_out += points
            by_tile[(spec.row, spec.col)] = (kept, points)
            warnings += [f"tile {spec.name}: {w}" for w in record.get("warnings", [])]
    return cells, warnings, left_out


def run_card(out) -> dict:
    """The card of the slide run in `out` (slide identity, path, configuration)."""
    path = Path(out) / RUN_CARD
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise SlideRunError(f"{out}: no slide run here ({RUN_CARD} missing); run `cervseg slide SLIDE --out {out}`") from None
    except (OSError, ValueError) as exc:
        raise SlideRunError(f"{path} cannot be read ({exc})") from exc
    if not isinstance(card, dict) or "slide" not in card:
        raise SlideRunError(f"{path} is not a cervseg slide run's card")
    return card
