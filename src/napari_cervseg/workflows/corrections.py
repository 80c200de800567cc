"""Learning from the user's corrections: the self-trained segmenter fine-tuned on cells a user
corrected by hand.

This is the one place where masks train anything, and only the user's own: labels (0 background,
1 cytoplasm, 2 nucleus) the user painted in napari or edited in a ``cervseg segment --out`` folder.
The recipe (:class:`CorrectionConfig`) starts from the base segmenter's weights (its BatchNorm
statistics kept) and runs 60 optimiser steps of 4 strongly augmented copies of the corrected
cells (flips, 90-degree turns, zoom / shift, brightness / contrast), about a minute on one CPU
thread. It was chosen on four ISBI development fields that the benchmark never scores
(``benchmarks/dev/tune_corrections.py``, ``benchmarks/results/dev/corrections_tuning.md``):
whole cells beat random crops (the cell's extent needs its context), keeping the BatchNorm
statistics helped, and an unweighted loss (every pixel alike) keeps the small nucleus from growing, so
the N/C ratio is not biased upwards (at some cost in nucleus Dice).

- :func:`check_correction` validates one (image, labels) pair.
- :func:`read_corrections_folder` finds the labels files a user corrected in an output folder of
  ``cervseg segment`` (untouched outputs are left out) and pairs them with their images.
- :func:`learn_from_corrections` fine-tunes and writes the new segmenter with its card.

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..io.images import ImageError, to_rgb_uint8
from .run_folder import (  # noqa: F401  (labels_digest, instances_digest: re-exported where they were)
    FIELD_SUFFIXES,
    JOURNAL,
    LABELS_SUFFIX,
    instances_digest,
    labels_as_saved,
    labels_digest,
)


class CorrectionError(ValueError):
    """Corrections that cannot train: the message names what is wrong and what would work."""


@dataclass
class CorrectionConfig:
    """How the segmenter is fine-tuned on corrected cells (chosen on ISBI development fields).

    Parameters
    ----------
    steps : int
        Optimiser steps (each a batch of augmented crops).
    lr : float
        Peak learning rate of the one-cycle schedule.
    batch_size : int
        Augmented cells per step (fewer cells than this: each once).
    crop : int
        Side of random square crops (px at the segmenter's input size; 0 = the whole cell).
    scale_jitter : float
        Zoom range of the augmentation (1 +- this).
    weight_decay : float
        AdamW weight decay.
    freeze_bn : bool
        Keep the base segmenter's BatchNorm statistics.
    balance_classes : bool
        Weight the loss by the square root of inverse class frequency.
    seed : int
        Random seed (crops, augmentation, order).
    """

    steps: int = 60
    lr: float = 1e-3
    batch_size: int = 4
    crop: int = 0
    scale_jitter: float = 0.15
    weight_decay: float = 1e-4
    freeze_bn: bool = True
    balance_classes: bool = False
    seed: int = 0

    def selftrain_config(self):
        """The same recipe as the :class:`~.selftrain.SelfTrainConfig` that trains it."""
        from .selftrain import SelfTrainConfig

        return SelfTrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size, crop=self.crop,
                               scale_jitter=self.scale_jitter, weight_decay=self.weight_decay, seed=self.seed,
                               freeze_bn=self.freeze_bn, balance_classes=self.balance_classes,
                               teacher={})


@dataclass
class Correction:
    """One corrected cell: the image, the user's labels, where they came from."""

    image: np.ndarray
    labels: np.ndarray
    source: str


def check_correction(image, labels, name: str = "cell") -> tuple[np.ndarray, np.ndarray]:
    """Validate one corrected cell and return it as (RGB uint8 image, uint8 labels).

    Parameters
    ----------
    image : array-like
        The cell image (grey or RGB).
    labels : array-like
        Its corrected labels, same height and width: 0 background, 1 cytoplasm, 2 nucleus.
    name : str
        What the messages call it.

    Returns
    -------
    tuple of ndarray
        The RGB uint8 image and the uint8 labels.

    Raises
    ------
    CorrectionError
        Shapes differ, values outside 0 / 1 / 2, no nucleus or no cytoplasm.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((20, 20), np.uint8); labels[4:16, 4:16] = 1; labels[8:12, 8:12] = 2
    >>> rgb, lab = check_correction(np.zeros((20, 20, 3), np.uint8), labels)
    >>> rgb.shape, sorted(np.unique(lab).tolist())
    ((20, 20, 3), [0, 1, 2])
    """
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and (labels[..., :3] == labels[..., :1]).all():
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise CorrectionError(f"{name}: labels have shape {labels.shape}; give 2D labels (0 background,"
                              " 1 cytoplasm, 2 nucleus) of one cell image")
    try:
        rgb, _ = to_rgb_uint8(image, name=name)
    except ImageError as exc:
        raise CorrectionError(f"{name}: {exc}") from exc
    if rgb.shape[:2] != labels.shape:
        raise CorrectionError(f"{name}: labels are {labels.shape[0]} x {labels.shape[1]} px but the image is"
                              f" {rgb.shape[0]} x {rgb.shape[1]}; the labels must cover the image pixel for pixel")
    values = np.unique(labels)
    bad = [v for v in values.tolist() if v not in (0, 1, 2)]
    if bad:
        raise CorrectionError(f"{name}: label values {bad[:5]} are not 0 (background), 1 (cytoplasm) or 2"
                              " (nucleus); paint with those three values only")
    if not (labels == 2).any():
        raise CorrectionError(f"{name}: no nucleus (value 2) in the labels; paint the nucleus or leave this cell out")
    if not (labels == 1).any():
        raise CorrectionError(f"{name}: no cytoplasm (value 1) in the labels; paint the cytoplasm or leave"
                              " this cell out")
    return rgb, labels.astype(np.uint8)


def cells_from_labels(image, labels, name: str = "cell", boxes=None, skipped: list | None = None) -> list[Correction]:
    """The corrected cells of one image and its labels: the whole image, or each box a cell.

    Parameters
    ----------
    image, labels : array-like
        A cell (or field) image and its corrected labels, same height and width.
    name : str
        What the sources and messages call it.
    boxes : list of (row0, col0, row1, col1), optional
        Cells drawn as rectangles (the Segment cell widget's ``cervseg_boxes``); each is one cell.
    skipped : list, optional
        Receives ``(name, reason)`` for each box left out (no nucleus painted in it).

    Returns
    -------
    list of Correction

    Raises
    ------
    CorrectionError
        As :func:`check_correction` (for the whole image without boxes).
    """
    rgb, lab = _whole(image, labels, name)
    if not boxes:
        return [Correction(*check_correction(rgb, lab, name), name)]
    cells = []
    for r0, c0, r1, c1 in boxes:
        where = f"{name} [rows {r0}-{r1}, columns {c0}-{c1}]"
        try:
            cells.append(Correction(*check_correction(rgb[r0:r1, c0:c1], lab[r0:r1, c0:c1], where), where))
        except CorrectionError as exc:
            if skipped is None:
                raise
            skipped.append((where, str(exc)))
    return cells


def _whole(image, labels, name):
    labels = np.asarray(labels)
    try:
        rgb, _ = to_rgb_uint8(image, name=name)
    except ImageError as exc:
        raise CorrectionError(f"{name}: {exc}") from exc
    if labels.shape[:2] != rgb.shape[:2]:
        raise CorrectionError(f"{name}: labels are {' x '.join(map(str, labels.shape))} px but the image is"
                              f" {rgb.shape[0]} x {rgb.shape[1]}; the labels must cover the image pixel for pixel")
    return rgb, labels


_ROI = re.compile(r"_x(\d+)_y(\d+)_w(\d+)_h(\d+)$")


def _journal_records(out: Path) -> dict[str, dict]:
    """Per output stem: its source, frame, and the labels it was segmented with (first run)."""

    records: dict[str, dict] = {}
    path = out / JOURNAL
    if not path.exists():
        return records
    with path.open() as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict) or not rec.get("image"):
                continue
            entry = records.setdefault(rec["image"], {})
            entry.setdefault("source", rec.get("source"))
            entry.setdefault("frame", rec.get("frame"))
            if rec.get("status") == "segmented":  # the latest run that wrote the labels
                entry["segmented"] = rec
    return records


def _was_corrected(labels_path: Path, labels: np.ndarray, record: dict) -> tuple[bool, str]:
    """Whether a labels file holds the user's work, and why we think so."""
    from ..io.images import is_own_output

    if not is_own_output(labels_path):
        return True, "saved by another program (no napari-cervseg mark)"
    seg = record.get("segmented")
    if seg is None:
        return False, "no record of how it was segmented in the journal"
    if seg.get("labels_sha256"):
        changed = seg["labels_sha256"] != labels_digest(labels)
        return changed, "differs from the labels the run wrote" if changed else "as the run wrote it"
    row = seg.get("row") or {}  # a folder from a version without the digest: compare the areas
    areas = (int((labels == 2).sum()), int((labels >= 1).sum()))
    try:
        written = (int(round(float(row["nucleus_area"]))), int(round(float(row["cell_area"]))))
    except (KeyError, TypeError, ValueError):
        return False, "no areas in the journal to compare with"
    changed = areas != written
    return changed, "its areas differ from those the run measured" if changed else "areas as the run measured"


def read_corrections_folder(out_dir, skipped: list | None = None) -> list[Correction]:
    """The cells a user corrected in a ``cervseg segment --out`` folder, with their images.

    A ``<stem>_labels.png`` counts as corrected when it is not as the run wrote it: saved by
    another program (it lacks napari-cervseg's PNG mark), or its pixels differ from those the run
    recorded in the folder's journal (``.cervseg-journal.jsonl``). Untouched outputs are left out.
    The image is the run's input (its path, page and region from the journal).

    Parameters
    ----------
    out_dir : path
        The ``--out`` folder of ``cervseg segment``.
    skipped : list, optional
        Receives ``(stem, reason)`` for each labels file left out.

    Returns
    -------
    list of Correction

    Raises
    ------
    CorrectionError
        Not such a folder, or no corrected labels in it (the message says how to correct them).
    """
    from ..io.images import read_image

    out = Path(out_dir)
    if not out.is_dir():
        raise CorrectionError(f"{out}: not a folder; give the --out folder of a `cervseg segment` run")
    records = _journal_records(out)
    if not records:
        raise CorrectionError(f"{out}: no {JOURNAL} journal, so not a `cervseg segment --out` folder (or one"
                              " from an old version); give that folder, or pairs of image and labels")
    skipped = skipped if skipped is not None else []
    found = []
    for labels_path in sorted(out.glob(f"*{LABELS_SUFFIX}")):
        stem = labels_path.name[: -len(LABELS_SUFFIX)]
        if stem.startswith("."):
            continue
        record = records.get(stem)
        if record is None:
            skipped.append((stem, "not in the journal: which image it labels is unknown"))
            continue
        if (out / f"{stem}{FIELD_SUFFIXES[0]}").exists():
            skipped.append((stem, "a field of view (several cells); only single-cell outputs train"))
            continue
        try:
            labels, _ = labels_as_saved(read_image(labels_path), labels_path)
        except ImageError as exc:
            skipped.append((stem, str(exc)))
            continue
        corrected, why = _was_corrected(labels_path, np.asarray(labels), record)
        if not corrected:
            skipped.append((stem, f"untouched ({why})"))
            continue
        source = (record.get("segmented") or {}).get("source_path") or record.get("source")
        roi = _ROI.search(stem)
        try:
            image = read_image(source, frame=record.get("frame"),
                               roi=tuple(int(v) for v in roi.groups()) if roi else None)
        except (ImageError, OSError, TypeError) as exc:
            skipped.append((stem, f"its image {source} cannot be read ({exc})"))
            continue
        where = f"{source}" + (f" [frame {record['frame']}]" if record.get("frame") is not None else "")
        try:
            rgb, lab = check_correction(image, labels, name=f"{labels_path.name} (image {where})")
        except CorrectionError as exc:
            raise CorrectionError(f"{exc}; fix the file or move it out of {out}") from exc
        found.append(Correction(rgb, lab, f"{labels_path.name} <- {where}"))
    if not found:
        reasons = "; ".join(f"{s}: {r}" for s, r in skipped[:5]) or "no _labels.png files"
        raise CorrectionError(f"{out}: no corrected labels found ({reasons}). Correct a cell first: open its"
                              " _labels.png in napari (drag it onto the viewer with its image), paint, and save it"
                              " over the same file")
    return found


def read_field_corrections(out_dir, skipped: list | None = None) -> list[tuple]:
    """The fields whose ``_cells.png`` / ``_nuclei.png`` a user corrected in a ``cervseg segment
    --field`` output folder, as ``(rgb, cells, nuclei, description)``.

    A field counts as corrected when either file is not as the run wrote it (its digest in the
    folder's journal differs, or a program other than napari-cervseg saved it). Untouched fields
    are left out (with their reason in ``skipped``)."""
    from ..io.images import is_own_output, read_image

    out = Path(out_dir)
    if not out.is_dir():
        raise CorrectionError(f"{out}: not a folder; give the --out folder of a `cervseg segment --field` run")
    records = _journal_records(out)
    if not records:
        raise CorrectionError(f"{out}: no {JOURNAL} journal, so not a `cervseg segment --out` folder")
    skipped = skipped if skipped is not None else []
    found = []
    for cells_path in sorted(out.glob(f"*{FIELD_SUFFIXES[0]}")):
        stem = cells_path.name[: -len(FIELD_SUFFIXES[0])]
        nuclei_path = out / f"{stem}{FIELD_SUFFIXES[1]}"
        record = records.get(stem)
        if record is None or not nuclei_path.exists():
            skipped.append((stem, "not in the journal, or its _nuclei.png is missing"))
            continue
        seg = record.get("segmented") or {}
        try:
            cells = np.asarray(read_image(cells_path)).astype(np.int32)
            nuclei = np.asarray(read_image(nuclei_path)).astype(np.int32)
        except ImageError as exc:
            skipped.append((stem, str(exc)))
            continue
        foreign = not is_own_output(cells_path) or not is_own_output(nuclei_path)
        changed = (seg.get("cells_sha256") not in (None, instances_digest(cells))
                   or seg.get("nuclei_sha256") not in (None, instances_digest(nuclei)))
        if not (foreign or changed):
            skipped.append((stem, "untouched"))
            continue
        source = seg.get("source_path") or record.get("source")
        try:
            image = read_image(source, frame=record.get("frame"))
        except (ImageError, OSError, TypeError) as exc:
            skipped.append((stem, f"its image {source} cannot be read ({exc})"))
            continue
        rgb = to_rgb_uint8(image)[0]
        if cells.shape != rgb.shape[:2] or nuclei.shape != cells.shape:
            skipped.append((stem, f"labels {cells.shape} / {nuclei.shape} are not the image's size {rgb.shape[:2]}"))
            continue
        found.append((rgb, cells, nuclei, f"{cells_path.name} <- {source}"))
    if not found:
        reasons = "; ".join(f"{s}: {r}" for s, r in skipped[:5]) or "no _cells.png files"
        raise CorrectionError(f"{out}: no corrected field found ({reasons}). Correct a field first: open its"
                              " _cells.png and _nuclei.png in napari with its image, paint, and save them over"
                              " the same files")
    return found


def check_output_path(out, base_path: Path | None = None) -> Path:
    """Where the new segmenter goes; refuses to replace anything (the bundled segmenter, or any file)."""
    from ..segment.student import SEGMENTER_DIR

    given = Path(out).expanduser()
    if given.is_dir() or (given.exists() and not given.is_file()):
        raise CorrectionError(f"{given}: is a folder or not a regular file; give a new file name for the segmenter,"
                              f" e.g. {given / 'my-lab.safetensors' if given.is_dir() else 'my-lab.safetensors'}")
    path = given
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path = path.resolve()
    card = path.with_suffix(".json")
    if path.parent == SEGMENTER_DIR.resolve():
        raise CorrectionError(f"{path}: that is the folder of the bundled segmenters, which are never replaced;"
                              " write the new segmenter anywhere else (e.g. ~/cervseg/my-lab.safetensors)")
    for p in (path, card):
        if p.exists():
            raise CorrectionError(f"{p}: exists and is not overwritten; choose a new file name, or move the old"
                                  " file away first")
    if base_path is not None and Path(base_path).resolve() == path:
        raise CorrectionError(f"{path}: is the base segmenter itself; write the new one to another file")
    return path


def learn_from_corrections(images, labels, out, base="default", config: CorrectionConfig | None = None,
                           sources=None, progress=None, should_stop=None, log=None) -> Path:
    """Fine-tune a segmenter on cells a user corrected and write it (``.safetensors`` + ``.json`` card).

    Parameters
    ----------
    images, labels : sequence of arrays
        The corrected cells and their labels (0 background, 1 cytoplasm, 2 nucleus), one pair per cell.
    out : path
        The new segmenter's file; it must not exist (nothing is overwritten, the bundled
        segmenters least of all).
    base : str or path or CellSegmenter
        The segmenter to start from: ``"default"`` (bundled) or a file from ``cervseg self-train``.
    config : CorrectionConfig, optional
        The recipe (default: the one chosen on Herlev validation cells).
    sources : sequence of str, optional
        Where each cell came from (written to the card).
    progress : callable, optional
        ``progress(stage, fraction)``.
    should_stop : callable, optional
        Returns True to cancel (:class:`~.selftrain.TrainingCancelled`; nothing is written).
    log : callable, optional
        Receives one line per epoch.

    Returns
    -------
    Path
        The written ``.safetensors``; load it with ``load_segmenter(path)`` or use it with
        ``segment_cell(..., method="self-trained", segmenter=path)``.

    Raises
    ------
    CorrectionError
        No cells, a bad pair (see :func:`check_correction`), or an output that exists.
    """
    from ..segment.student import SegmenterError, load_segmenter, save_segmenter
    from .selftrain import train_segmenter

    config = config or CorrectionConfig()
    images, labels = list(images), list(labels)
    if not images:
        raise CorrectionError("no corrected cells given; correct at least one cell's labels first")
    if len(images) != len(labels):
        raise CorrectionError(f"{len(images)} images but {len(labels)} labels; give one labels array per image")
    sources = list(sources) if sources is not None else [f"cell {i + 1}" for i in range(len(images))]
    pairs = [check_correction(im, lab, name=src) for im, lab, src in zip(images, labels, sources, strict=True)]
    try:
        base_seg = load_segmenter(base)
    except SegmenterError as exc:
        raise CorrectionError(f"base segmenter: {exc}") from exc
    base_path = None if base_seg.source.startswith("<") else Path(base_seg.source)
    path = check_output_path(out, base_path)
    t0 = time.perf_counter()
    if progress is not None:
        progress("training", 0.0)
    seg = train_segmenter([p[0] for p in pairs], [p[1] for p in pairs], config.selftrain_config(),
                          log=log or (lambda *a: None), init=base_seg, progress=progress, should_stop=should_stop)
    seconds = round(time.perf_counter() - t0, 1)
    seg.card.update({
        "supervision": "the user's own corrected labels (fine-tuned from the base segmenter, whose own"
                       " supervision is in base_card)",
        "base_segmenter": str(base_path) if base_path is not None else str(base),
        "base_card": {k: v for k, v in base_seg.card.items() if k != "history"},
        "corrected_cells": len(pairs),
        "corrected_sources": sources,
        "correction_config": asdict(config),
        "train_seconds": seconds,
    })
    seg.card.pop("teacher", None)
    check_output_path(path, base_path)  # again: a file may have appeared while training
    save_segmenter(seg, path)
    if progress is not None:
        progress("written", 1.0)
    return path
