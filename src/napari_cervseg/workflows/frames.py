"""Segmenting in-memory images: :func:`segment_item` (one image array segmented and measured: the
step that ``cervseg segment`` and the napari actions share) and the loops behind the napari actions,
:func:`segment_frames` over named images and :func:`segment_boxes` over rectangles of one image,
whose results :func:`paste_boxes` puts back into full-size arrays.

``config`` is a :class:`~napari_cervseg.workflows.batch.BatchConfig` (model, method, settings).
Imports nothing else of the workflows; nothing here imports Qt or napari.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..io.images import ImageError, to_rgb_uint8
from ..measure.descriptors import measure
from ..measure.records import NOT_JUDGEABLE_REASON, reasons_text
from ..segment.pipeline import segment_cell
from ..stages import ProgressCallback, StopCheck

#: per-input failures that are reported and do not stop the run
INPUT_ERRORS = (ImageError, ValueError, OSError, RuntimeError, MemoryError)


def segment_item(image, config, name: str = "image", progress=None):
    """Segment one image array and measure it: ``(SegmentationResult, descriptors row)``."""

    result = segment_cell(image, model=config.model, method=config.method, target=config.target,
                          device=config.device, progress=progress, max_pixels=config.max_pixels, **config.options)
    rgb, _ = to_rgb_uint8(image, name=name)
    row = {"image": name, "status": "segmented", "method": result.method,
           "predicted_class": result.predicted_class,
           "probability": result.probability if result.probability is not None else float("nan"),
           "cell_found": result.cell_found, "judgeable": result.judgeable,
           NOT_JUDGEABLE_REASON: reasons_text(result.not_judgeable),
           **measure(result.labels, rgb, pixel_size=config.pixel_size),
           "seconds": result.timings.get("total", float("nan")),
           "warnings": " | ".join(result.warnings)}
    return result, row


def segment_frames(frames: Iterable[tuple[str, np.ndarray]], config,
                   progress: ProgressCallback | None = None, total: int | None = None,
                   should_stop: StopCheck | None = None):
    """Segment in-memory images one by one: the loop behind the napari actions (frames, rectangles).

    Parameters
    ----------
    frames : iterable of (name, image)
        The images; an item may give an exception instead of an image (a frame that could not
        be read), which is reported as that frame's failure.
    config : BatchConfig
        Model, method and settings (``config.options`` go to ``segment_cell``).
    progress : callable, optional
        ``progress(stage, fraction)``: the stage named after the frame, the fraction of all
        ``total`` frames.
    total : int, optional
        How many frames there are (for the progress fraction).
    should_stop : callable, optional
        Asked before each frame; True ends the loop (what was yielded before stays with the caller).

    Yields
    ------
    name, result, row
        Each frame's name, its ``SegmentationResult`` (None if it failed) and its descriptors row;
        a failed frame's row has a ``status`` naming the error, and the other frames go on.
    """
    for i, (name, image) in enumerate(frames):
        if should_stop is not None and should_stop():
            return

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


def segment_boxes(image: np.ndarray, boxes, config, progress: ProgressCallback | None = None,
                  should_stop: StopCheck | None = None):
    """Segment each box of one image as one cell, with the loop of :func:`segment_frames`.

    Parameters
    ----------
    image : ndarray
        The whole (H, W) or (H, W, 3) image the boxes lie in.
    boxes : sequence of (r0, c0, r1, c1)
        Cells to segment, in image coordinates (end exclusive).
    config : BatchConfig
        Model, method and settings, as for :func:`segment_frames`.
    progress : callable, optional
        ``progress(stage, fraction)`` with the fraction of all boxes.
    should_stop : callable, optional
        Asked before each box; True ends the loop.

    Yields
    ------
    box, name, result, row
        In the order of ``boxes``: the box, its name (``"cell 1"``, ``"cell 2"``...), its
        :class:`~napari_cervseg.segment.result.SegmentationResult` (None if it failed) and its
        descriptors row (whose ``status`` says why it failed). Paste the results back with
        :func:`paste_boxes`.

    Examples
    --------
    >>> from napari_cervseg.workflows.batch import BatchConfig
    >>> image = np.full((40, 80, 3), 200, np.uint8)
    >>> config = BatchConfig(model=None, method="colour-baseline")
    >>> [(name, r.cell_found) for _, name, r, _ in segment_boxes(image, [(0, 0, 40, 40)], config)]
    [('cell 1', False)]
    """
    boxes = [tuple(int(v) for v in box) for box in boxes]
    crops = ((f"cell {i + 1}", image[r0:r1, c0:c1]) for i, (r0, c0, r1, c1) in enumerate(boxes))
    frames = segment_frames(crops, config, progress, total=len(boxes), should_stop=should_stop)
    for box, (name, result, row) in zip(boxes, frames, strict=False):  # (frames end early on should_stop)
        yield box, name, result, row


def paste_boxes(shape, boxes, results) -> tuple[np.ndarray, np.ndarray]:
    """Paste per-box results back into full-size arrays.

    Parameters
    ----------
    shape : tuple
        The whole image's shape (its first two entries are used).
    boxes : sequence of (r0, c0, r1, c1)
        The boxes, as given to :func:`segment_boxes`.
    results : sequence of SegmentationResult or None
        ``results[i]`` belongs to ``boxes[i]``; None (a failed box) leaves its box empty.

    Returns
    -------
    labels : ndarray
        (H, W) uint8; where boxes overlap, later boxes win.
    heatmap : ndarray
        (H, W) float32; where boxes overlap, the maximum.
    """
    labels = np.zeros(tuple(shape)[:2], np.uint8)
    heatmap = np.zeros(tuple(shape)[:2], np.float32)
    for (r0, c0, r1, c1), result in zip(boxes, results, strict=True):
        if result is None:
            continue
        region = labels[r0:r1, c0:c1]
        region[result.labels > 0] = result.labels[result.labels > 0]
        if result.heatmap is not None:
            heatmap[r0:r1, c0:c1] = np.maximum(heatmap[r0:r1, c0:c1], result.heatmap)
    return labels, heatmap
