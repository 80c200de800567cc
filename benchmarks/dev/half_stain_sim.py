"""Development simulation (issue 22, session 14): mean extent Dice of the matched cells if each
reported cell's free boundary (its boundary pixels on no other reported cell's extent) moved one
pixel at a time, out where the stain (Lab distance from the slide's colour) is at least LEVEL x
the median stain of the cell's interior (extent eroded 3 px, nucleus excluded), in where it is
under that, for up to STEPS steps; for LEVEL and STEPS in a grid. Masks read only to score.

    python benchmarks/dev/half_stain_sim.py SET [SET ...]   # prints one line per set
"""
import sys

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, "benchmarks")
from bench_fields import dice, extent_mask, field_set, match_nuclei

from napari_cervseg import segment_field
from napari_cervseg.segment.cells import background_colour, lab_image


def refine(e, D, others, nucleus, level, steps):
    interior = ndi.binary_erosion(e, iterations=3) & ~nucleus
    L = float(np.median(D[interior])) if interior.sum() > 20 else float(np.median(D[e]))
    for _ in range(steps):
        ring_out = ndi.binary_dilation(e) & ~e & ~others
        ring_in = e & ~ndi.binary_erosion(e) & ~others
        new = (e | (ring_out & (level * L <= D))) & ~(ring_in & (level * L > D))
        if (new == e).all():
            break
        e = new
    return e

for name in sys.argv[1:]:
    conf = [(lv, st) for lv in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) for st in (1, 2, 3)]
    res = {c: [] for c in conf}
    base = []
    for _path, rgb, pages in field_set(name):
        r = segment_field(rgb, operating_point="screening")
        lab = lab_image(rgb)
        D = np.linalg.norm(lab - background_colour(lab), axis=-1)
        ext = {k: extent_mask(r, k, r.cells.shape) for k in range(1, r.n_cells + 1)}
        for i, k in match_nuclei(r.nuclei, pages):
            e, t = ext[k], pages[i] > 0
            others = np.zeros_like(e)
            for j, m in ext.items():
                if j != k:
                    others |= m
            base.append(dice(e, t))
            for c in conf:
                res[c].append(dice(refine(e, D, others, r.nuclei == k, *c), t))
    print(name, f"base {np.mean(base):.4f}", {c: round(float(np.mean(v)), 4) for c, v in res.items()}, flush=True)
