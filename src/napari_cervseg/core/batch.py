"""The batch engine behind ``cervseg segment`` and the napari batch action.

- :func:`expand_inputs` streams the work: files, folders, globs, and one item per page of a
  multi-page TIFF (read from the header; no pixels are loaded).
- :func:`segment_item` segments one image array and builds its descriptors row: the one step that
  the CLI (through :func:`process_input`, which adds reading and writing files) and the napari
  action (on layer data) share.
- :func:`run_batch` runs :func:`process_input` over the inputs in this process, in local worker
  processes (``workers``), or on a Dask cluster (``scheduler``: a dask.distributed address). Only
  a bounded window of inputs is in flight and workers return descriptor rows, never images, so
  memory does not grow with the number of inputs. Every finished input is appended to a journal
  (``.cervseg-journal.jsonl``) at once, so a killed run loses nothing it finished; outputs are
  written atomically with the labels last, so a labels file on disk means a complete output.

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .imageio import MAX_PIXELS, TIFF_SUFFIXES, ImageError, image_info, parse_roi

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg") + TIFF_SUFFIXES
#: what one input writes; the labels come last so that their presence means "complete"
OUTPUT_SUFFIXES = ("_heatmap.png", "_overlay.png", "_labels.png")
LABELS_SUFFIX = "_labels.png"
JOURNAL = ".cervseg-journal.jsonl"


@dataclass(frozen=True)
class BatchInput:
    """One image to segment: a file, or one page (``frame``) of a multi-page TIFF."""

    source: str
    frame: int | None = None
    n_frames: int = 1
    roi: tuple | None = None

    @property
    def stem(self) -> str:
        """The output file stem: ``name``, ``name_f0003`` for a TIFF page, plus ``_x.._y.._w.._h..``
        for a region of interest."""
        stem = Path(self.source).stem
        if self.frame is not None:
            stem += f"_f{self.frame:0{max(4, len(str(self.n_frames - 1)))}d}"
        if self.roi is not None:
            x, y, w, h = self.roi
            stem += f"_x{x}_y{y}_w{w}_h{h}"
        return stem

    @property
    def label(self) -> str:
        return self.source + (f" [frame {self.frame}]" if self.frame is not None else "")


@dataclass
class BatchConfig:
    """How every input is segmented and measured (the CLI's options)."""

    model: str | None = "default"
    method: str = "gradcam++"
    grouping: str | None = None
    target: str | None = None
    device: str | None = None
    options: dict = field(default_factory=dict)
    pixel_size: float | None = None
    overwrite: bool = False
    max_pixels: int | None = MAX_PIXELS
    #: torch threads per worker process (None: torch's default); set so workers do not oversubscribe
    torch_threads: int | None = None


def expand_inputs(items: Iterable[str], roi=None) -> Iterator[BatchInput]:
    """Stream the inputs named by files, folders (their images, sorted) and globs.

    A TIFF with several pages yields one input per page. Files that cannot be opened still yield
    one input, so that the run reports them as failed by name. Our own outputs in a folder
    (``*_labels.png`` ...) are not inputs.
    """
    box = parse_roi(roi) if roi is not None else None
    for item in items:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            paths = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                           and not q.name.endswith(OUTPUT_SUFFIXES))
        elif not p.exists() and any(c in item for c in "*?["):
            paths = sorted(Path(q) for q in glob.glob(item, recursive=True) if Path(q).is_file())
        else:
            paths = [p]
        for path in paths:
            n_frames = 1
            if path.suffix.lower() in TIFF_SUFFIXES:
                try:
                    n_frames = image_info(path)[0]
                except ImageError:
                    n_frames = 1  # reported when it is processed
            if n_frames > 1:
                for frame in range(n_frames):
                    yield BatchInput(str(path), frame, n_frames, box)
            else:
                yield BatchInput(str(path), None, 1, box)


def segment_item(image, config: BatchConfig, name: str = "image", progress=None):
    """Segment one image array and measure it: ``(SegmentationResult, descriptors row)``."""
    from .descriptors import measure
    from .imageio import to_rgb_uint8
    from .pipeline import segment_cell

    result = segment_cell(image, model=config.model, method=config.method, grouping=config.grouping,
                          target=config.target, device=config.device, progress=progress,
                          max_pixels=config.max_pixels, **config.options)
    rgb, _ = to_rgb_uint8(image, name=name)
    row = {"image": name, "status": "segmented", "method": result.method,
           "predicted_class": result.predicted_class,
           "probability": result.probability if result.probability is not None else float("nan"),
           "cell_found": result.cell_found,
           **measure(result.labels, rgb, pixel_size=config.pixel_size),
           "seconds": result.timings.get("total", float("nan")),
           "warnings": " | ".join(result.warnings)}
    return result, row


def _read_input(item: BatchInput, config: BatchConfig):
    from .imageio import read_image

    return read_image(item.source, frame=item.frame, roi=item.roi, max_pixels=config.max_pixels)


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


#: per-input failures that are reported and do not stop the run
INPUT_ERRORS = (ImageError, ValueError, OSError, RuntimeError, MemoryError)


def process_input(item: BatchInput, out_dir: str, config: BatchConfig, previous: dict | None = None) -> dict:
    """Segment one input and write its outputs; returns a record (never raises for a bad input).

    Record keys: ``image`` (output stem), ``source``, ``frame``, ``status`` ("segmented", "kept"
    or "failed"), ``reason`` (for failures), ``row`` (the descriptors row), ``seconds``.
    An input whose labels file exists is kept, never overwritten (it may hold hand corrections)
    unless ``config.overwrite``: it is re-measured from those labels, with the classification
    fields of ``previous`` (its row of an earlier run) when there is one.
    """
    from .descriptors import measure
    from .imageio import read_image, to_rgb_uint8, write_png_atomic
    from .pipeline import heatmap_rgb, overlay

    t0 = time.perf_counter()
    _set_threads(config.torch_threads)
    out = Path(out_dir)
    stem = item.stem
    record = {"image": stem, "source": item.source, "frame": item.frame, "status": "failed",
              "reason": None, "row": None, "seconds": 0.0}
    heat_path, overlay_path, labels_path = (out / f"{stem}{s}" for s in OUTPUT_SUFFIXES)
    try:
        if labels_path.exists() and not config.overwrite:
            labels = read_image(labels_path)
            image = None
            try:
                image = _read_input(item, config)
                if np.shape(image)[:2] != np.shape(labels)[:2]:
                    image = None
            except ImageError:
                pass  # the source may be gone; the labels alone still measure
            keep = {k: previous[k] for k in ("method", "predicted_class", "probability", "cell_found")
                    if previous and k in previous}
            row = {"image": stem, "source": item.label, "status": "kept existing labels", **keep,
                   **measure(labels, image, pixel_size=config.pixel_size)}
            record.update(status="kept", row=row)
        else:
            image = _read_input(item, config)
            result, row = segment_item(image, config, name=stem)
            rgb, _ = to_rgb_uint8(image)
            heat = result.heatmap if result.heatmap is not None else np.zeros(result.labels.shape, np.float32)
            write_png_atomic(heat_path, heatmap_rgb(heat))
            write_png_atomic(overlay_path, overlay(rgb, result.labels))
            write_png_atomic(labels_path, result.labels)  # last: its presence marks a complete output
            row = {"image": stem, "source": item.label, **{k: v for k, v in row.items() if k != "image"}}
            record.update(status="segmented", row=row)
    except INPUT_ERRORS as exc:
        record["reason"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = time.perf_counter() - t0
    return record


# ----------------------------------------------------------------------------------------------
# running many


def versions() -> dict:
    """Versions of what produced the outputs (for the run summary)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("napari-cervseg", "torch", "torchvision", "numpy", "opencv-python-headless",
                 "scikit-image", "scikit-learn", "zennit", "grad-cam", "dask", "distributed"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


class _Journal:
    """Append-only JSON-lines record of finished inputs; read back to resume."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def read(self) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        if not self.path.exists():
            return rows
        with self.path.open() as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a killed run
                if rec.get("row"):
                    rows[rec["image"]] = rec["row"]
        return rows

    def append(self, record: dict) -> None:
        if self.fh is None:
            self.fh = self.path.open("a")
        self.fh.write(json.dumps(record, default=_json_default) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)


def _read_csv_rows(path: Path) -> dict[str, dict]:
    import csv

    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["image"]: row for row in csv.DictReader(fh) if row.get("image")}


class _LocalExecutor:
    """In-process execution behind the same submit / wait interface as the process pool."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - surfaced by .result(), as a pool would
            fut.set_exception(exc)
        return fut

    def shutdown(self):
        pass


def wait_first(pending: set, dask_client=None) -> tuple[set, set]:
    """Block until at least one future of ``pending`` is done: ``(done, not_done)``."""
    if dask_client is not None:
        from distributed import wait

        done, not_done = wait(list(pending), return_when="FIRST_COMPLETED")
        return set(done), set(not_done)
    from concurrent.futures import FIRST_COMPLETED, wait

    done, not_done = wait(pending, return_when=FIRST_COMPLETED)
    return set(done), set(not_done)


def _init_worker(threads: int) -> None:
    _set_threads(threads)


def local_executor(workers: int, torch_threads: int | None = None):
    """``(executor, torch threads per worker)``: this process for 1 worker, else a pool of spawned
    processes with ``cpu_count // workers`` torch threads each (so they do not oversubscribe)."""
    if workers <= 1:
        return _LocalExecutor(), torch_threads
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
    # spawn: a forked copy of a process that already runs torch's thread pool can deadlock
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads,)), threads



def run_batch(inputs: Iterable[BatchInput], out_dir, config: BatchConfig, workers: int = 1,
              scheduler: str | None = None, progress: Callable | None = None,
              cancel: Callable[[], bool] | None = None, total: int | None = None) -> dict:
    """Segment every input into ``out_dir``; returns the run summary (also written to summary.json).

    ``workers``: 1 runs in this process; N > 1 starts N local worker processes (each with
    ``cpu_count // N`` torch threads unless ``config.torch_threads`` says otherwise).
    ``scheduler``: address of a dask.distributed scheduler (``tcp://host:8786``); its workers must
    see ``out_dir`` and the inputs at the same paths (a shared file system).
    ``progress(done, total, record)`` is called after each input; ``cancel()`` returning True stops
    submitting (what finished is kept and summarised).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    t0 = time.perf_counter()
    journal = _Journal(out / JOURNAL)
    previous = {**_read_csv_rows(out / "descriptors.csv"), **journal.read()}
    executor, client, mode = _LocalExecutor(), None, "in-process"
    if scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise RuntimeError("--scheduler needs dask.distributed: pip install 'napari-cervseg[dask]'") from exc
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one"
                               " (`dask scheduler` + `dask worker ADDRESS`) or drop --scheduler") from exc
        executor, mode = client, f"dask.distributed {scheduler}"
        info = client.scheduler_info().get("workers", {})
        workers = max(1, sum(w.get("nthreads", 1) for w in info.values()))
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

    def finish(record):
        records[record["image"]] = record
        if record["status"] == "failed":
            failures.append({"input": record["source"] if record["frame"] is None
                             else f"{record['source']} [frame {record['frame']}]", "reason": record["reason"]})
        journal.append(record)
        if progress is not None:
            progress(len(records), total, record)

    def collect(done):
        for fut in done:
            finish(fut.result())

    try:
        for item in inputs:
            if cancel is not None and cancel():
                cancelled = True
                break
            n_inputs += 1
            stem = item.stem
            if stem in seen:
                failures.append({"input": item.label,
                                 "reason": f"same output name {stem!r} as {seen[stem]}; outputs would collide"})
                if progress is not None:
                    progress(len(records) + len(failures), total, None)
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
    rows = [records[s]["row"] for s in seen if s in records and records[s]["row"]]
    from . import xai as _xai
    from .descriptors import write_rows_csv

    write_rows_csv(out / "descriptors.csv", rows)
    elapsed = time.perf_counter() - t0
    seg_seconds = [r["seconds"] for r in records.values() if r["status"] == "segmented"]
    n_done = sum(r["status"] == "segmented" for r in records.values())
    summary = {
        "inputs": n_inputs,
        "done": n_done,
        "skipped": sum(r["status"] == "kept" for r in records.values()),
        "failed": failures,
        "cancelled": cancelled,
        "method": config.method,
        "cam_backend": _xai.resolve_cam_backend("auto", "gradcam++" if config.method == "self-trained" else config.method) if config.method in (*_xai.CAM_METHODS, "self-trained") else None,
        "grouping": config.grouping,
        "model": _model_source(config.model),
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
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=_json_default))
    tmp.replace(out / "summary.json")
    return summary


def _model_source(model) -> str | None:
    if model is None or isinstance(model, str):
        if model in (None, "default"):
            from .models import load_model

            return None if model is None else load_model("default").source
        return model
    return getattr(model, "source", str(model))


# ----------------------------------------------------------------------------------------------
# napari / in-memory: frames and layers


def segment_frames(frames: Iterable[tuple[str, np.ndarray]], config: BatchConfig,
                   progress: Callable | None = None, total: int | None = None):
    """Segment in-memory images one by one: yields ``(name, SegmentationResult or None, row)``.

    A frame that cannot be segmented (or that the iterable gives as an exception because it could
    not be read) yields ``None`` and a row whose status names the error, so
    one bad frame of a stack does not stop the others. ``progress(stage, fraction)`` reports the
    overall fraction (and may raise to cancel).
    """
    for i, (name, image) in enumerate(frames):
        def sub(stage, fraction, i=i, name=name):
            if progress is not None:
                where = f"{name} ({i + 1}/{total})" if total else name
                progress(f"{where}: {stage}", (i + fraction) / total if total else fraction)

        if isinstance(image, Exception):  # the frame could not even be read
            yield name, None, {"image": name, "status": f"failed: {image}"}
            continue
        try:
            result, row = segment_item(image, config, name=name, progress=sub)
        except INPUT_ERRORS as exc:
            yield name, None, {"image": name, "status": f"failed: {type(exc).__name__}: {exc}"}
            continue
        yield name, result, row
