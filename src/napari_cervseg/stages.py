"""Stage timings and progress reports in one place, so the algorithms read as algorithms."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: ``progress(stage, fraction)``: what a long run reports (stage name, fraction done in [0, 1])
ProgressCallback = Callable[[str, float], None]


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
