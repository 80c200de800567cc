"""Development simulation (issue 22, session 16): nuclei matched (IoU >= 0.5) and false if each
reported nucleus were redrawn by GrabCut inside its own cell: outside the cell's extent is
background; the reported nucleus eroded is nucleus; the nucleus grown by GROW of its equivalent
radius is probably nucleus; the rest of the cell probably not. Pale, large nuclei (light
dysplasia) are drawn by the crop's segmentation as their dark chromatin only (a speck of a
nucleus whose mask is ten times larger); their colour, not their grey, sets them apart from the
cytoplasm. The redraw is kept when its area is within RANGE of the reported one's and it stays
under MAX_SHARE of the cell. Masks read only to score.

    python benchmarks/dev/nucleus_grabcut_sim.py SET [SET ...]   # [matched, false] per setting

Uses nucleus_strongest_edge_sim's cache of segment_field's output (data/cache/).
"""
import sys

import cv2
import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, "benchmarks")
sys.path.insert(0, "benchmarks/dev")
from bench_fields import match_nuclei
from nucleus_strongest_edge_sim import reported

MAX_SHARE = 0.7


def redrawn(rgb, nuc, ext, grow, low, high, iterations=4):
    area = int(nuc.sum())
    if area < 10:
        return nuc
    radius = np.sqrt(area / np.pi)
    mask = np.full(nuc.shape, cv2.GC_BGD, np.uint8)
    mask[ext] = cv2.GC_PR_BGD
    near = ndi.binary_dilation(nuc, iterations=max(1, int(round(grow * radius)))) & ext
    mask[near] = cv2.GC_PR_FGD
    core = ndi.binary_erosion(nuc, iterations=1)
    mask[core if core.any() else nuc] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(rgb), mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return nuc
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    parts, _ = ndi.label(fg)
    keep = np.unique(parts[nuc & fg])
    out = ndi.binary_fill_holes(np.isin(parts, keep[keep > 0]))
    if not low * area <= out.sum() <= high * area or out.sum() > MAX_SHARE * ext.sum():
        return nuc
    return out


def main():
    confs = [(grow, low, high) for grow in (0.5, 1.0) for (low, high) in ((0.5, 4.0), (0.8, 10.0))]
    for name in sys.argv[1:]:
        tot = {c: [0, 0] for c in [None] + confs}
        for rgb, pages, nuclei, extents in reported(name):
            for c in [None] + confs:
                lab = np.zeros(nuclei.shape, np.int32)
                for k, ((r0, c0, r1, c1), m) in enumerate(extents, start=1):
                    y0, x0 = max(0, r0 - 12), max(0, c0 - 12)
                    y1, x1 = min(lab.shape[0], r1 + 12), min(lab.shape[1], c1 + 12)
                    ext = np.zeros((y1 - y0, x1 - x0), bool)
                    ext[r0 - y0:r1 - y0, c0 - x0:c1 - x0] = m
                    nuc = nuclei[y0:y1, x0:x1] == k
                    if c is not None and nuc.any():
                        nuc = redrawn(rgb[y0:y1, x0:x1], nuc, ext | nuc, *c)
                    view = lab[y0:y1, x0:x1]
                    view[nuc & (view == 0)] = k
                pairs = match_nuclei(lab, pages)
                tot[c][0] += len(pairs)
                tot[c][1] += len(extents) - len(pairs)
        print(name, {str(c): v for c, v in tot.items()}, flush=True)


if __name__ == "__main__":
    main()
