"""The batch engine behind ``cervseg segment`` and the napari batch action.

- :func:`~.inputs.expand_inputs` streams the work: files, folders, globs, and one item per page of a
  multi-page TIFF (read from the header; no pixels are loaded) (:mod:`.inputs`).
- :func:`~.frames.segment_item` segments one image array and builds its descriptors row: the one
  step that the CLI (through :func:`process_input`, which adds reading and writing files) and the
  napari action (on layer data, :mod:`.frames`) share.
- :func:`run_batch` runs :func:`process_input` over the inputs in this process, in local worker
  processes (``workers``), or on a Dask cluster (``scheduler``: a dask.distributed address; see
  :mod:`.executors`). Only a bounded window of inputs is in flight and workers return descriptor
  rows, never images, so memory does not grow with the number of inputs. Every finished input is
  appended to a journal (``.cervseg-journal.jsonl``, :mod:`.run_folder`) at once, so a killed run
  loses nothing it finished; outputs are written atomically with the labels last, so a labels file
  on disk means a complete output.

The names of :mod:`.inputs`, :mod:`.executors`, :mod:`.frames` and :mod:`.run_folder` that batch
users know are importable from here too. Nothing here imports Qt or napari.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..classify import load_model
from ..explain import CAM_METHODS
from ..explain.cam import resolve_cam_backend
from ..io.images import (
    MAX_PIXELS,
    ImageError,
    OutputError,
    read_image,
    to_rgb_uint8,
    write_png_atomic,
    write_text_atomic,
)
from ..measure.descriptors import measure, write_rows_csv
from ..measure.records import (
    BBOX,
    CELL_ID,
    CENTROID,
    JUDGEABLE,
    NOT_JUDGEABLE,
    NOT_JUDGEABLE_REASON,
    P_ABNORMAL,
    PREDICTED_CLASS,
    WARNINGS,
)
from ..segment.pipeline import check_request, count_cells
from ..segment.result import heatmap_rgb, overlay
from ..segment.settings import DEFAULT_SEGMENT_METHOD, explanation_method
from ..stages import ProgressCallback, StopCheck, report_count
from .executors import LocalExecutor, dask_client, local_executor, set_threads, wait_first
from .fields import (
    cell_rows,
    field_model,
    resolve_finder,
    segment_field,
    stored_classes,
    white_balance_for,
)
from .frames import INPUT_ERRORS, paste_boxes, segment_boxes, segment_frames, segment_item
from .inputs import IMAGE_SUFFIXES, BatchInput, expand_inputs, read_input
from .run_folder import (
    CLASS_KEYS,
    FIELD_SUFFIXES,
    JOURNAL,
    LABELS_SUFFIX,
    LOCK,
    OUTPUT_SUFFIXES,
    FolderInUseError,
    Journal,
    OutputFolderError,
    check_output_folder,
    clean_temporary_files,
    damaged_output,
    folder_lock,
    instances_digest,
    json_default,
    labels_as_saved,
    labels_digest,
    missing,
)

__all__ = [
    # this module's own
    "FIELD_MODES", "BatchConfig", "process_input", "run_batch", "versions",
    # .inputs
    "IMAGE_SUFFIXES", "BatchInput", "expand_inputs", "read_input",
    # .frames
    "INPUT_ERRORS", "paste_boxes", "segment_boxes", "segment_frames", "segment_item",
    # .executors
    "dask_client", "local_executor", "set_threads", "wait_first",
    # .run_folder
    "CLASS_KEYS", "FIELD_SUFFIXES", "JOURNAL", "LABELS_SUFFIX", "LOCK", "OUTPUT_SUFFIXES", "FolderInUseError",
    "Journal", "OutputFolderError", "check_output_folder", "clean_temporary_files", "damaged_output",
    "folder_lock", "instances_digest", "json_default", "labels_as_saved", "labels_digest", "missing",
]

#: --field: "no" (every input is one cell), "yes" (every input is a field), "auto" (a field when
#: it shows several nuclei of cell size)
FIELD_MODES = ("no", "yes", "auto")


@dataclass
class BatchConfig:
    """How every input is segmented and measured (the CLI's options).

    ``options`` go to ``segment_cell`` / ``segment_field`` (single settings by name, ``settings=``,
    ``operating_point=``). ``grouping`` is kept for older callers: it is moved into ``options``.
    """

    model: str | None = "default"
    method: str = DEFAULT_SEGMENT_METHOD
    grouping: str | None = None
    target: str | None = None
    device: str | None = None
    options: dict = field(default_factory=dict)
    pixel_size: float | None = None
    overwrite: bool = False
    max_pixels: int | None = MAX_PIXELS
    #: torch threads per worker process (None: torch's default); set so workers do not oversubscribe
    torch_threads: int | None = None
    #: one of FIELD_MODES
    field_mode: str = "no"
    #: the field route's cell finder (None: the package's DEFAULT_FINDER)
    finder: str | None = None
    #: the field route's white balance of each cell's crop (None: into-range for the bundled
    #: classifiers, off for one's own; fields.white_balance_for)
    white_balance: str | None = None

    def check(self) -> BatchConfig:
        """Refuse a configuration that cannot run, before any input is read or file written: what
        :func:`~napari_cervseg.segment.pipeline.check_request` checks for every entry point (method,
        settings, device, pixel size, pixel limit, model, operating point, target), the field mode
        and the finder. Returns itself."""
        if self.field_mode not in FIELD_MODES:
            raise ValueError(f"field_mode = {self.field_mode!r}: one of {', '.join(FIELD_MODES)}")
        if self.finder is not None:
            resolve_finder(self.finder)
        white_balance_for(self.model, self.white_balance)  # refuses a mode the field route does not have
        check_request(self.model, self.method, settings=self.options.get("settings"), options=self.options,
                      operating_point=self.options.get("operating_point"), target=self.target, device=self.device,
                      pixel_size=self.pixel_size, max_pixels=self.max_pixels)
        return self

    def __post_init__(self):
        if self.grouping is not None:  # an option like any other
            if self.options.get("grouping", self.grouping) != self.grouping:
                raise ValueError(f"grouping={self.grouping!r} and options['grouping']="
                                 f"{self.options['grouping']!r} disagree; give one")
            self.options = {**self.options, "grouping": self.grouping}
            self.grouping = None


def process_input(item: BatchInput, out_dir: str, config: BatchConfig, previous: dict | None = None) -> dict:
    """Segment one input and write its outputs; returns a record (never raises for a bad input).

    Record keys: ``image`` (output stem), ``source``, ``frame``, ``status`` ("segmented", "kept"
    or "failed"), ``reason`` (for failures), ``row`` (the descriptors row), ``seconds``; for a
    segmented cell also ``labels_sha256`` (the digest of the labels written, to recognise later
    corrections) and ``source_path`` (the input's absolute path).
    An input whose labels file exists is kept, never overwritten (it may hold hand corrections)
    unless ``config.overwrite``: it is re-measured from those labels, with the classification
    fields of ``previous`` (its row of an earlier run) when there is one.
    """
    t0 = time.perf_counter()
    set_threads(config.torch_threads)
    out = Path(out_dir)
    stem = item.stem
    record = {"image": stem, "source": item.source, "frame": item.frame, "status": "failed",
              "reason": None, "row": None, "seconds": 0.0}
    heat_path, overlay_path, labels_path = (out / f"{stem}{s}" for s in OUTPUT_SUFFIXES)
    cells_path = out / f"{stem}{FIELD_SUFFIXES[0]}"
    try:
        damaged = labels_path.exists() and not config.overwrite and damaged_output(labels_path)
        nuclei_path = out / f"{stem}{FIELD_SUFFIXES[1]}"
        if cells_path.exists() and not config.overwrite and not damaged_output(cells_path):
            # a field's cells are the user's once written (whoever's writer saved them later):
            # measured again, never segmented over, whatever became of its _labels.png
            record.update(_kept_field(item, stem, out, config, previous))
        elif nuclei_path.exists() and not cells_path.exists() and not config.overwrite:
            raise ImageError(f"{stem}: the field's {nuclei_path.name} is there but its {cells_path.name} is missing,"
                             " so its cells cannot be measured one by one; restore it, or move the field's"
                             " outputs away (or give --overwrite) to segment the field again")
        elif labels_path.exists() and not config.overwrite and not damaged:
            labels, notes = labels_as_saved(read_image(labels_path), labels_path)
            image = None
            try:
                image = read_input(item, config.max_pixels)
                if np.shape(image)[:2] != np.shape(labels)[:2]:
                    notes.append(f"{labels_path.name} is {labels.shape[0]} x {labels.shape[1]} px but the image"
                                 f" is {np.shape(image)[0]} x {np.shape(image)[1]}: measured in the labels' own"
                                 " pixels, no intensities (resized labels? areas scale with the square)")
                    image = None
            except ImageError:
                pass  # the source may be gone; the labels alone still measure
            keep = {k: previous[k] for k in CLASS_KEYS if previous and not missing(previous.get(k))}
            measured = measure(labels, image, pixel_size=config.pixel_size)
            if notes:
                measured["measure_notes"] = " | ".join(filter(None, [*notes, measured.get("measure_notes")]))
            row = {"image": stem, "source": item.label, "status": "kept existing labels", **keep, **measured}
            record.update(status="kept", row=row)
        elif _is_field(image := read_input(item, config.max_pixels), config):
            record.update(_segment_field_input(image, item, stem, out, config))
        else:
            result, row = segment_item(image, config, name=stem)
            rgb, _ = to_rgb_uint8(image)
            heat = result.heatmap if result.heatmap is not None else np.zeros(result.labels.shape, np.float32)
            _write_outputs([(heat_path, heatmap_rgb(heat)), (overlay_path, overlay(rgb, result.labels)),
                            (labels_path, result.labels)], replace_labels=config.overwrite or damaged)
            row = {"image": stem, "source": item.label, **{k: v for k, v in row.items() if k != "image"}}
            # the digest of the labels as written: a later change is the user's correction
            record.update(status="segmented", row=row, labels_sha256=labels_digest(result.labels),
                          source_path=os.path.abspath(item.source))
    except INPUT_ERRORS as exc:
        record["reason"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a bug fails this input alone, named, not the whole run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        record["reason"] = (f"unexpected {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno};"
                            " please report it)")
    record["seconds"] = time.perf_counter() - t0
    return record


def _write_outputs(outputs: list[tuple[Path, np.ndarray]], replace_labels: bool) -> None:
    """Write one input's PNG outputs in order, the ``_labels.png`` last (it marks a complete output);
    on a failed write remove those already written, so a re-run redoes the input whole."""

    written: list[Path] = []
    try:
        for path, array in outputs:
            write_png_atomic(path, array, replace_foreign=replace_labels and path.name.endswith(LABELS_SUFFIX))
            written.append(path)
    except OSError:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _is_field(image, config: BatchConfig) -> bool:
    """Whether ``--field`` makes this input a field of view (``auto``: several nuclei of cell size)."""
    if config.field_mode == "yes":
        return True
    if config.field_mode != "auto":
        return False
    return count_cells(to_rgb_uint8(image)[0]) >= 2


def _field_rows(stem: str, item: BatchInput, table: list[dict], status: str) -> list[dict]:
    """descriptors.csv rows of a field: one per cell, with the image's name first."""
    rows = []
    for row in table:
        lead = (CELL_ID, PREDICTED_CLASS, P_ABNORMAL, BBOX, CENTROID, WARNINGS, JUDGEABLE, NOT_JUDGEABLE)
        r0, c0, r1, c1 = row[BBOX]
        rows.append({"image": stem, "source": item.label, "status": status, CELL_ID: row[CELL_ID],
                     PREDICTED_CLASS: row.get(PREDICTED_CLASS), P_ABNORMAL: row.get(P_ABNORMAL),
                     **{k: v for k, v in row.items() if k not in lead},
                     **({JUDGEABLE: row[JUDGEABLE], NOT_JUDGEABLE_REASON: row.get(NOT_JUDGEABLE, "")}
                        if JUDGEABLE in row else {}),
                     BBOX: f"{r0},{c0},{r1},{c1}", WARNINGS: " | ".join(row.get(WARNINGS, []))})
    return rows


def _segment_field_input(image, item: BatchInput, stem: str, out: Path, config: BatchConfig) -> dict:
    """Segment a field of view and write its outputs: heatmap, overlay (abnormal cells boxed),
    the cells and nuclei instance labels, then the semantic labels (last: they mark it complete)."""

    result = segment_field(image, model=config.model, method=config.method, target=config.target,
                           device=config.device, pixel_size=config.pixel_size, finder=config.finder,
                           white_balance=config.white_balance, **config.options)
    if result.n_cells > np.iinfo(np.uint16).max:
        raise ValueError(f"{result.n_cells} cells do not fit a uint16 PNG; segment the image in regions (--roi)")
    rgb, _ = to_rgb_uint8(image)
    outputs = [(out / f"{stem}_heatmap.png", heatmap_rgb(result.heatmap)),
               (out / f"{stem}_overlay.png", result.overlay(rgb)),
               (out / f"{stem}_cells.png", result.cells.astype(np.uint16)),
               (out / f"{stem}_nuclei.png", result.nuclei.astype(np.uint16)),
               (out / f"{stem}_labels.png", result.labels)]
    _write_outputs(outputs, replace_labels=config.overwrite)
    # each cell's class with its centroid: on a re-run the class follows the cell, not its id
    classes = {r.cell_id: [r.predicted_class, r.p_abnormal, *(round(v, 1) for v in r.centroid)] for r in result.records}
    row = {"image": stem, "source": item.label, "status": "segmented", "field": True, "method": result.method,
           "n_cells": result.n_cells, "abnormal_cells": len(result.abnormal_ids),
           "cells_without_verdict": len(result.no_verdict_ids), "verdict": result.verdict(),
           "cell_classes": json.dumps(classes), "left_out": json.dumps(result.summary()["left_out"]),
           "seconds": result.timings.get("total", float("nan")),
           "warnings": " | ".join(result.warnings)}

    # digests of the instance labels as written: a later change is the user's correction
    return {"status": "segmented", "row": row, "cell_rows": _field_rows(stem, item, result.table, "segmented"),
            "cells_sha256": instances_digest(result.cells), "nuclei_sha256": instances_digest(result.nuclei),
            "source_path": os.path.abspath(item.source)}


def _kept_field(item: BatchInput, stem: str, out: Path, config: BatchConfig, previous: dict | None) -> dict:
    """A field whose outputs exist (perhaps hand-corrected): its cells measured again, one row each,
    with the classes of the run that segmented it (from the journal) where the cell is still
    there. Whatever does not add up between ``_cells``, ``_nuclei`` and ``_labels`` is named in a
    note, never measured silently wrong."""

    cells_path, nuclei_path = (out / f"{stem}{s}" for s in FIELD_SUFFIXES)
    cells = np.asarray(read_image(cells_path)).astype(np.int32)
    notes: list[str] = []
    if nuclei_path.exists():
        nuclei = np.asarray(read_image(nuclei_path)).astype(np.int32)
    else:
        nuclei = np.zeros_like(cells)
        notes.append(f"{nuclei_path.name} is missing: no nucleus measured (nucleus area and N/C ratio are blank)")
    if cells.ndim != 2 or nuclei.shape != cells.shape:
        raise ImageError(f"{cells_path.name} and {nuclei_path.name} must be 2D instance labels of one size;"
                         f" they are {cells.shape} and {nuclei.shape}")
    try:
        image = read_input(item, config.max_pixels)
    except ImageError:
        image = None  # the source may be gone; the labels alone still measure
    if image is not None and np.shape(image)[:2] != cells.shape:
        notes.append(f"{cells_path.name} is {cells.shape[0]} x {cells.shape[1]} px but the image is"
                     f" {np.shape(image)[0]} x {np.shape(image)[1]}: measured in the labels' own pixels, no"
                     " intensities (resized labels? areas scale with the square)")
        image = None
    labels_path = out / f"{stem}{LABELS_SUFFIX}"
    if labels_path.exists() and not damaged_output(labels_path):
        with contextlib.suppress(ImageError, ValueError):
            labels = np.asarray(labels_as_saved(read_image(labels_path), labels_path)[0])
            implied = np.where(nuclei > 0, 2, np.where(cells > 0, 1, 0))
            if labels.shape == cells.shape and not np.array_equal(labels, implied):
                notes.append(f"{labels_path.name} differs from {cells_path.name} / {nuclei_path.name}: the cells are"
                             f" measured from the instance labels; correct cells there ({labels_path.name} is"
                             " their 0/1/2 summary)")
    else:
        notes.append(f"{labels_path.name} is missing or empty; the cells are measured from {cells_path.name}")
    stray = sorted(set(np.unique(nuclei[(nuclei > 0) & (cells != nuclei)]).tolist()))
    if stray:
        notes.append(f"nucleus id(s) {stray[:10]} in {nuclei_path.name} lie outside the cell of the same id in"
                     f" {cells_path.name}: those pixels are not counted (give a nucleus its cell's id)")
    known = stored_classes(previous.get("cell_classes") if previous else None, cells)
    table = cell_rows(cells, nuclei, image, config.pixel_size, known)
    for row in table:
        row.setdefault(PREDICTED_CLASS, None)
        row.setdefault(P_ABNORMAL, None)
        row_notes = []
        if nuclei_path.exists() and not row.get("nucleus_area"):
            row_notes.append(f"no nucleus with id {row['cell_id']} inside this cell in {nuclei_path.name}")
        if row["cell_id"] not in known:
            row_notes.append("no class: this cell is not one the run classified (changed or new); segment the field"
                             " again with --overwrite to classify it")
        # the field's own notes go on every row too: descriptors.csv is what a user reads
        row_notes += [f"field: {n}" for n in notes]
        if row_notes:
            row["warnings"] = [*row.get("warnings", []), *row_notes]
    row = {"image": stem, "source": item.label, "status": "kept existing labels", "field": True,
           "n_cells": len(table), "cell_classes": previous.get("cell_classes") if previous else None,
           "left_out": previous.get("left_out") if previous else None,
           "warnings": " | ".join(notes)}
    return {"status": "kept", "row": row, "cell_rows": _field_rows(stem, item, table, "kept existing labels")}


# ----------------------------------------------------------------------------------------------
# running many


def versions() -> dict:
    """Versions of what produced the outputs (for the run summary)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("napari-cervseg", "torch", "torchvision", "numpy", "opencv-python-headless",
                 "scikit-image", "scikit-learn", "zennit", "grad-cam", "dask", "distributed"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _read_csv_rows(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["image"]: row for row in csv.DictReader(fh) if row.get("image")}


def run_batch(inputs: Iterable[BatchInput], out_dir, config: BatchConfig, workers: int = 1,
              scheduler: str | None = None, progress: ProgressCallback | None = None,
              should_stop: StopCheck | None = None, total: int | None = None,
              skipped_inputs: list | None = None, on_record: Callable[[dict], None] | None = None) -> dict:
    """Segment every input into ``out_dir``; returns the run summary (also written to summary.json).

    ``workers``: 1 runs in this process; N > 1 starts N local worker processes (each with
    ``cpu_count // N`` torch threads unless ``config.torch_threads`` says otherwise).
    ``scheduler``: address of a dask.distributed scheduler (``tcp://host:8786``); its workers must
    see ``out_dir`` and the inputs at the same paths (a shared file system).
    ``progress(stage, fraction)`` after each input (``"3 of 12 images: name status"``; the fraction
    of ``total`` inputs); ``should_stop()`` returning True stops submitting (what finished is kept
    and summarised, ``cancelled`` True): the protocol of :mod:`napari_cervseg.stages`.
    ``on_record(record)`` receives each input's record (its journal line) as it finishes.
    The configuration is checked (:meth:`BatchConfig.check`) before any file is touched.
    """
    config.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        check_output_folder(out)
        cleaned = clean_temporary_files(out)
        return _run_batch(inputs, out, config, workers, scheduler, progress, should_stop, total,
                          skipped_inputs, cleaned, on_record)


def _run_batch(inputs, out: Path, config: BatchConfig, workers, scheduler, progress, should_stop, total,
               skipped_inputs, cleaned, on_record) -> dict:
    started = time.time()
    t0 = time.perf_counter()
    journal = Journal(out / JOURNAL)
    previous = {**_read_csv_rows(out / "descriptors.csv"), **journal.read()}
    executor, client, mode = LocalExecutor(), None, "in-process"
    if scheduler:
        client, workers = dask_client(scheduler)
        executor, mode = client, f"dask.distributed {scheduler}"
        # parallelism comes from the tasks: one torch thread each unless told otherwise
        config = BatchConfig(**{**asdict(config), "torch_threads": config.torch_threads or 1})
    elif workers > 1:
        executor, threads = local_executor(workers, config.torch_threads)
        config = BatchConfig(**{**asdict(config), "torch_threads": threads})
        mode = f"{workers} local processes"
    window = 2 * workers
    records: dict[str, dict] = {}
    seen: dict[str, str] = {}
    failures: list[dict] = []
    pending: set = set()
    n_inputs = 0
    cancelled = False

    collided: list[str] = []  # inputs refused for an output name another input has

    def finish(record):
        records[record["image"]] = record
        if record["status"] == "failed":
            failures.append({"input": record["source"] if record["frame"] is None
                             else f"{record['source']} [frame {record['frame']}]", "reason": record["reason"]})
        journal.append(record)
        if on_record is not None:
            on_record(record)
        report_count(progress, len(records) + len(collided), total, "images", f"{record['image']} {record['status']}")

    def collect(done):
        for fut in done:
            finish(fut.result())

    try:
        for item in inputs:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            n_inputs += 1
            stem = item.stem
            if stem in seen:
                failures.append({"input": item.label,
                                 "reason": f"same output name {stem!r} as {seen[stem]}; outputs would collide"})
                collided.append(item.label)
                report_count(progress, len(records) + len(collided), total, "images", f"{item.label} failed")
                continue
            seen[stem] = item.label
            args = (process_input, item, str(out), config, previous.get(stem))
            pending.add(client.submit(*args, pure=False) if client is not None else executor.submit(*args))
            if len(pending) >= window:
                done, pending = wait_first(pending, client)
                collect(done)
        while pending:
            done, pending = wait_first(pending, client)
            collect(done)
    finally:
        journal.close()
        if client is not None:
            client.close()
        elif hasattr(executor, "shutdown"):
            executor.shutdown()

    # ``seen`` holds the accepted stems in input order
    rows = [row for s in seen if s in records and records[s]["row"]
            for row in (records[s].get("cell_rows") or [records[s]["row"]])]
    try:
        write_rows_csv(out / "descriptors.csv", rows)
    except OSError as exc:
        raise OutputError(f"{exc}; the images finished so far are complete on disk and a re-run"
                          " keeps them") from exc
    elapsed = time.perf_counter() - t0
    seg_seconds = [r["seconds"] for r in records.values() if r["status"] == "segmented"]
    n_done = sum(r["status"] == "segmented" for r in records.values())
    # inputs (or cells of a field) that are not a cell the classifier can judge: no class was called
    no_verdict = sum(row.get("judgeable") is False for row in rows)
    fields = {s: records[s]["row"] for s in seen if s in records and records[s]["row"]}
    left_out = {s: json.loads(row["left_out"]) for s, row in fields.items() if row.get("left_out")}
    summary = {
        "inputs": n_inputs,
        "done": n_done,
        "skipped": sum(r["status"] == "kept" for r in records.values()),
        "failed": failures,
        "no_verdict": no_verdict,
        "skipped_inputs": list(skipped_inputs or []),
        "removed_temporary_files": cleaned,
        "cancelled": cancelled,
        "method": config.method,
        "grouping": config.options.get("grouping"),
        "field_mode": config.field_mode,
        "finder": config.finder,
        # per field of view: what a screener should look at ("review: 2 abnormal cells")
        "field_verdicts": {s: row["verdict"] for s, row in fields.items() if row.get("verdict")},
        # per field: the nuclei the finder left out ([row, col]; ringed in orange in the overlay)
        "field_left_out": {s: points for s, points in left_out.items() if points},
        "cam_backend": _cam_backend(config),
        "model": _model_source(config.model),
        # the fields' classifier: for "default" the field route's own (FIELD_MODEL)
        "field_model": None if config.field_mode == "no" else _model_source(field_model(config.model)),
        "white_balance": None if config.field_mode == "no" else white_balance_for(config.model, config.white_balance),
        "options": config.options,
        "execution": {"mode": mode, "workers": workers, "torch_threads": config.torch_threads},
        "timings": {"wall_seconds": round(elapsed, 3),
                    "cells_per_second": round(n_done / elapsed, 3) if elapsed > 0 and n_done else 0.0,
                    "seconds_per_cell_median": round(float(np.median(seg_seconds)), 4) if seg_seconds else None,
                    "seconds_per_cell_mean": round(float(np.mean(seg_seconds)), 4) if seg_seconds else None},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
    }
    if journal.error:
        summary["journal_error"] = journal.error
    try:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=json_default))
    except OSError as exc:
        raise OutputError(f"{exc}; descriptors.csv and the images are complete") from exc
    return summary


def _cam_backend(config: BatchConfig) -> str | None:
    """Which implementation computed the CAM heatmaps ("pytorch-grad-cam" or "builtin"; None for
    methods without a CAM explanation)."""
    options = {k: v for k, v in config.options.items() if k != "settings"}
    method = explanation_method(config.method, config.options.get("settings"), **options)
    return resolve_cam_backend("auto", method) if method in CAM_METHODS else None


def _model_source(model) -> str | None:
    if model is None or isinstance(model, str):
        if model in (None, "default"):
            return None if model is None else load_model("default").source
        return model
    return getattr(model, "source", str(model))


_Journal = Journal  # the name the robustness tests used
