"""A candidate for issue 22: the learned finder looking at several working scales. Its nuclei come
and go with the scale (looked at on a real grey field, not measured by a committed script: a
clear nucleus was found at one scale and not at another), so the cells of the first scale are
kept and each other scale adds the cells whose nucleus touches no nucleus already kept.

    python benchmarks/bench_fields.py --finder multiscale[:FILE] --operating-point screening --out ...
"""

from __future__ import annotations

import numpy as np

from napari_cervseg.segment.finder import FIRST_SCALE, FoundCell, load_finder

SCALES = (FIRST_SCALE, 0.5, 1.0)


class MultiScale:
    """``find(rgb, scale)`` -> FoundCells from every scale of ``scales`` (relative to ``scale``)."""

    def __init__(self, learned="default", scales=SCALES, add=None):
        self.learned = load_finder(learned) if isinstance(learned, str) else learned
        self.scales = tuple(scales)
        #: optional second finder (``find(rgb)``) whose cells are added the same way
        self.add = add

    def choose_scale(self, rgb, scale=None):
        return self.learned.choose_scale(rgb, scale)

    def find(self, rgb: np.ndarray, scale=None) -> list[FoundCell]:
        factor = (scale or FIRST_SCALE) / FIRST_SCALE
        kept: list[FoundCell] = []
        taken = np.zeros(rgb.shape[:2], bool)
        sources = [lambda s=s: self.learned.find(rgb, s * factor) for s in self.scales]
        if self.add is not None:
            sources.append(lambda: self.add.find(rgb))
        for i, source in enumerate(sources):
            for cell in source():
                r0, c0, r1, c1 = cell.box
                if not cell.nucleus.any():
                    if i == 0:
                        kept.append(cell)
                    continue
                if taken[r0:r1, c0:c1][cell.nucleus].any():
                    continue
                kept.append(cell)
            for cell in kept:
                r0, c0, r1, c1 = cell.box
                taken[r0:r1, c0:c1] |= cell.nucleus
        return kept


class ClassicCells:
    """The classic finder's cells as ``find(rgb)`` (for ``MultiScale(add=...)``)."""

    def find(self, rgb, scale=None):
        from napari_cervseg.workflows.fields import _found_from_labels, detect_cells

        return _found_from_labels(*detect_cells(rgb))


def multiscale_plus_classic(learned="default") -> MultiScale:
    """The multi-scale learned finder, then the classic finder's cells whose nucleus touches none kept."""
    return MultiScale(learned, add=ClassicCells())
