"""A candidate cell finder for issue 22: every cell the learned finder finds, plus each cell the
classic finder finds whose nucleus no learned nucleus touches (the learned finder misses small
pale nuclei on grey fields that the classic contrast rules find). The rule that would make it
the default was written before it was scored: benchmarks/results/finder_rule.md.

    python benchmarks/bench_fields.py --finder union[:FILE] --operating-point screening --out ...

It is the multi-scale candidate at one scale with the classic cells added
(benchmarks/dev/multiscale_finder.py).
"""

from __future__ import annotations

from multiscale_finder import ClassicCells, MultiScale

from napari_cervseg.segment.finder import FIRST_SCALE


def learned_plus_classic(learned="default") -> MultiScale:
    """``find(rgb, scale)`` -> FoundCells: the learned cells, and the classic ones it missed."""
    return MultiScale(learned, scales=(FIRST_SCALE,), add=ClassicCells())
