"""A candidate cell finder for issue 22: every cell the learned finder finds, plus each cell the
classic finder finds whose nucleus no learned nucleus touches (the learned finder misses small
pale nuclei on grey fields that the classic contrast rules find). The rule that would make it
the default was written before it was scored: benchmarks/results/finder_rule.md.

    python benchmarks/bench_fields.py --finder union --operating-point screening --out ...
"""

from __future__ import annotations

import numpy as np

from napari_cervseg.segment.finder import FoundCell, load_finder
from napari_cervseg.workflows.fields import _found_from_labels, detect_cells


class LearnedPlusClassic:
    """``find(rgb, scale)`` -> FoundCells: the learned cells, and the classic ones it missed."""

    def __init__(self, learned="default"):
        self.learned = load_finder(learned)

    def choose_scale(self, rgb, scale=None):
        return self.learned.choose_scale(rgb, scale)

    def find(self, rgb: np.ndarray, scale=None) -> list[FoundCell]:
        learned = self.learned.find(rgb, scale)
        learned_nuclei = np.zeros(rgb.shape[:2], bool)
        for cell in learned:
            r0, c0, r1, c1 = cell.box
            learned_nuclei[r0:r1, c0:c1] |= cell.nucleus
        added = []
        for cell in _found_from_labels(*detect_cells(rgb)):
            r0, c0, r1, c1 = cell.box
            if cell.nucleus.any() and not learned_nuclei[r0:r1, c0:c1][cell.nucleus].any():
                added.append(cell)
        return learned + added
