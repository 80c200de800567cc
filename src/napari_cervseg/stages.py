"""Stage timings, progress reports and stopping in one place, so the algorithms read as algorithms.

The one protocol of every long call of the library (``segment_cell``, ``segment_field``,
``segment_frames``, ``segment_boxes``, ``run_batch``, ``segment_slide``):

- ``progress(stage: str, fraction: float)``: what is being done, and the fraction of the whole call
  done (0 to 1). Runs over many items name the count in the stage (``"3 of 12 images: ..."``).
- ``should_stop() -> bool``: asked between units of work (cells, images, tiles); True ends the
  call early, keeping and returning what finished (with a warning or a ``cancelled`` flag saying so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: ``progress(stage, fraction)``: what a long run reports (stage name, fraction done in [0, 1])
ProgressCallback = Callable[[str, float], None]
#: ``should_stop()``: True ends a call early between units of work (the one way to cancel)
StopCheck = Callable[[], bool]


def report_count(progress: ProgressCallback | None, done: int, total: int | None, what: str,
                 detail: str = "") -> None:
    """Report ``done`` of ``total`` items as ``progress("3 of 12 images: detail", 0.25)``."""
    if progress is None:
        return
    stage = f"{done} of {total} {what}" if total else f"{done} {what}"
    progress(f"{stage}: {detail}" if detail else stage, min(1.0, done / total) if total else 0.0)


class Stages:
    """Times named stages into ``timings`` (seconds) and reports progress to a callback.

    Parameters
    ----------
    progress : callable, optional
        ``progress(stage: str, fraction: float)``; None reports nothing.
    timings : dict, optional
        Where the seconds go (a new dict by default); a stage timed again is overwritten.

    Examples
    --------
    >>> stages = Stages()
    >>> with stages("grouping", report="group", at=0.4):
    ...     pass
    >>> sorted(stages.timings)
    ['grouping']
    """

    def __init__(self, progress: ProgressCallback | None = None, timings: dict | None = None):
        self.progress = progress
        self.timings = {} if timings is None else timings

    def report(self, stage: str, fraction: float) -> None:
        """Tell the callback (if any) that ``stage`` starts, ``fraction`` of the way through."""
        if self.progress is not None:
            self.progress(stage, fraction)

    @contextmanager
    def __call__(self, name: str, report: str | None = None, at: float = 0.0) -> Iterator[None]:
        """Time the block as stage ``name``; first report ``report`` at fraction ``at`` if given."""
        if report is not None:
            self.report(report, at)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start
