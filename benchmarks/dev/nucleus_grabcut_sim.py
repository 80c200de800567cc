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
from nucleus_strongest_edge_sim import score_redraws

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
    score_redraws(sys.argv[1:], confs, lambda window, nuc, cell, rgb, *c: redrawn(rgb[window], nuc, cell, *c))


if __name__ == "__main__":
    main()
