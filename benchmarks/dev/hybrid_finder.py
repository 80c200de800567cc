"""A candidate cell finder for issue 22: the classic finder's nuclei, each with the learned finder's
extent of the cell that nucleus belongs to (overlaps allowed). The rule that would make it the
default was written before it was scored: benchmarks/results/finder_rule.md.

    python benchmarks/bench_fields.py --finder hybrid --operating-point screening --out ...
"""

from __future__ import annotations

import numpy as np

from napari_cervseg.segment.finder import FoundCell, load_finder
from napari_cervseg.workflows.fields import _found_from_labels, detect_cells


class ClassicNucleiLearnedExtents:
    """``find(rgb, scale)`` -> FoundCells: classic nuclei, learned extents."""

    def __init__(self, learned="default"):
        self.learned = load_finder(learned)

    def choose_scale(self, rgb, scale=None):
        return self.learned.choose_scale(rgb, scale)

    def find(self, rgb: np.ndarray, scale=None) -> list[FoundCell]:
        classic = _found_from_labels(*detect_cells(rgb))
        learned = self.learned.find(rgb, scale)
        h, w = rgb.shape[:2]
        owner = np.zeros((h, w), np.int32)  # learned nucleus pixels -> learned cell index + 1
        for i, cell in enumerate(learned, start=1):
            r0, c0, r1, c1 = cell.box
            owner[r0:r1, c0:c1][cell.nucleus & (owner[r0:r1, c0:c1] == 0)] = i
        claims: dict[int, tuple[int, int]] = {}  # learned index -> (classic index, pixels covered)
        for j, cell in enumerate(classic):
            if not cell.nucleus.any():
                continue
            r0, c0, r1, c1 = cell.box
            hits = owner[r0:r1, c0:c1][cell.nucleus]
            counts = np.bincount(hits, minlength=1)
            counts[0] = 0
            if counts.max() < 1:
                continue
            k = int(counts.argmax())
            if k not in claims or counts[k] > claims[k][1]:
                claims[k] = (j, int(counts[k]))
        chosen = {j: k for k, (j, _) in claims.items()}
        out = []
        for j, cell in enumerate(classic):
            if j not in chosen:
                out.append(cell)
                continue
            ext = learned[chosen[j] - 1]
            box = (min(cell.box[0], ext.box[0]), min(cell.box[1], ext.box[1]),
                   max(cell.box[2], ext.box[2]), max(cell.box[3], ext.box[3]))
            extent = np.zeros((box[2] - box[0], box[3] - box[1]), bool)
            nucleus = np.zeros_like(extent)
            for src, mask in ((ext, ext.extent), (cell, cell.nucleus)):
                r0, c0 = src.box[0] - box[0], src.box[1] - box[1]
                extent[r0:r0 + mask.shape[0], c0:c0 + mask.shape[1]] |= mask
            r0, c0 = cell.box[0] - box[0], cell.box[1] - box[1]
            nucleus[r0:r0 + cell.nucleus.shape[0], c0:c0 + cell.nucleus.shape[1]] = cell.nucleus
            out.append(FoundCell(box, extent, nucleus, cell.score))
        return out
