"""Development simulation (issue 22, session 14): nuclei matched (IoU >= 0.5) and false if each
reported nucleus's edge moved one pixel at a time, out (inside its cell's extent) where the grey
is at most SHARE of the way from the nucleus's own grey (median of its core, eroded 2 px) to its
cytoplasm's (median of a ring 3-8 px around it inside the cell), in where it is above, for up to
STEPS steps; for STEPS and SHARE in a grid. Masks read only to score.

    python benchmarks/dev/nucleus_edge_sim.py SET [SET ...]   # prints [matched, false] per setting
"""
import sys

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, "benchmarks")
from bench_fields import field_set, match_nuclei

from napari_cervseg import segment_field


def refine(nuc, ext, grey, steps, share):
    core = ndi.binary_erosion(nuc, iterations=2)
    if core.sum() < 10:
        return nuc
    ring = ndi.binary_dilation(nuc, iterations=8) & ~ndi.binary_dilation(nuc, iterations=3) & ext
    if ring.sum() < 10:
        return nuc
    inside, outside = np.median(grey[core]), np.median(grey[ring])
    if outside <= inside:
        return nuc
    mid = inside + share * (outside - inside)
    n = nuc
    for _ in range(steps):
        out = ndi.binary_dilation(n) & ~n & ext & (grey <= mid)
        into = n & ~ndi.binary_erosion(n) & (grey > mid)
        new = (n | out) & ~into
        if (new == n).all():
            break
        n = new
    return n

confs = [(s, sh) for s in (2, 4, 8) for sh in (0.3, 0.5, 0.7)]
for name in sys.argv[1:]:
    tot = {c: [0, 0] for c in [None] + confs}
    for _path, rgb, pages in field_set(name):
        r = segment_field(rgb, operating_point="screening")
        grey = rgb.astype(np.float32).mean(2)
        for c in [None] + confs:
            lab = np.zeros(r.nuclei.shape, np.int32)
            for k in range(1, r.n_cells + 1):
                (r0, c0, r1, c1), m = r.extent(k)
                ext = np.zeros(lab.shape, bool)
                ext[r0:r1, c0:c1] = m
                nuc = r.nuclei == k
                if c is not None:
                    nuc = refine(nuc, ext | nuc, grey, *c)
                lab[nuc & (lab == 0)] = k
            pairs = match_nuclei(lab, pages)
            tot[c][0] += len(pairs)
            tot[c][1] += r.n_cells - len(pairs)
    print(name, {str(c): v for c, v in tot.items()}, flush=True)
