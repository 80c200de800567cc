"""GrabCut refinement of rough masks (Sec. III-F), and the mask clean-up shared by every pipeline.

A rough region becomes GrabCut seeds: ``sure_fg`` -> GC_FGD, ``probable_fg`` -> GC_PR_FGD,
``sure_bg`` -> GC_BGD, everything else GC_PR_BGD. GrabCut then fits colour GMMs to the seeds and
cuts along image edges. It runs at a working resolution (``work_size`` longest side) so a large
image costs no more than a typical Herlev crop; the mask is resized back smoothly.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

GC_BGD, GC_FGD, GC_PR_BGD, GC_PR_FGD = cv2.GC_BGD, cv2.GC_FGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD
DEFAULT_WORK_SIZE = 160


def disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), disk(radius)).astype(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    return cv2.erode(mask.astype(np.uint8), disk(radius), borderType=cv2.BORDER_REPLICATE).astype(bool)


def seed_map(shape, probable_fg, sure_fg=None, sure_bg=None) -> np.ndarray:
    """GrabCut mask: PR_BGD everywhere, then PR_FGD, sure BGD and sure FGD (later wins)."""
    seeds = np.full(shape[:2], GC_PR_BGD, np.uint8)
    seeds[np.asarray(probable_fg, bool)] = GC_PR_FGD
    if sure_bg is not None:
        seeds[np.asarray(sure_bg, bool)] = GC_BGD
    if sure_fg is not None:
        seeds[np.asarray(sure_fg, bool)] = GC_FGD
    return seeds


def _scale_for(shape, work_size: int | None) -> float:
    if not work_size:
        return 1.0
    return min(1.0, work_size / max(shape[:2]))


def grabcut(image_rgb: np.ndarray, seeds: np.ndarray, iterations: int = 5,
            work_size: int | None = DEFAULT_WORK_SIZE) -> np.ndarray:
    """Run GrabCut from a seed map; returns the foreground as a bool mask of the image's size.

    When the seeds give GrabCut nothing to learn from (no foreground, or no background sample),
    the foreground part of the seeds is returned unchanged rather than raising.
    """
    fg_seed = (seeds == GC_FGD) | (seeds == GC_PR_FGD)
    bg_seed = (seeds == GC_BGD) | (seeds == GC_PR_BGD)
    if iterations <= 0 or not fg_seed.any() or not bg_seed.any():
        return fg_seed
    h, w = seeds.shape
    scale = _scale_for(seeds.shape, work_size)
    img = np.ascontiguousarray(image_rgb[..., :3])
    s = seeds
    if scale < 1.0:
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        s = cv2.resize(seeds, size, interpolation=cv2.INTER_NEAREST)
        if not (((s == GC_FGD) | (s == GC_PR_FGD)).any() and ((s == GC_BGD) | (s == GC_PR_BGD)).any()):
            return fg_seed
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    work = s.copy()
    cv2.setRNGSeed(0)  # GrabCut seeds its GMMs with k-means on OpenCV's global RNG: same input, same cut
    try:
        cv2.grabCut(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), work, None, bgd, fgd, int(iterations),
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # GMM initialisation fails on too few distinct samples (e.g. a near-constant image)
        return fg_seed
    fg = ((work == GC_FGD) | (work == GC_PR_FGD)).astype(np.float32)
    if not fg.any():
        # GrabCut gave every seed pixel to the background: keep the seed rather than lose the region
        return fg_seed
    if scale < 1.0:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    return fg >= 0.5


def largest_component(mask: np.ndarray, near: np.ndarray | None = None) -> np.ndarray:
    """The largest connected component (or, given ``near``, the one overlapping it most)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    if near is not None and np.asarray(near, bool).any():
        counts = np.bincount(lab[np.asarray(near, bool)], minlength=n + 1)
        counts[0] = 0
        if counts.max() > 0:
            return lab == counts.argmax()
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    return lab == sizes.argmax()


def combine(nucleus: np.ndarray, cytoplasm: np.ndarray, cleanup: bool = True) -> np.ndarray:
    """Labels 0 background / 1 cytoplasm / 2 nucleus; the nucleus wins where both claim a pixel.

    ``cleanup``: one nucleus (largest component, holes filled); the cell is the component that holds
    the nucleus, holes filled, and always contains the nucleus. Everything stays inside the image.
    """
    nucleus = np.asarray(nucleus, bool)
    cell = np.asarray(cytoplasm, bool) | nucleus
    if cleanup:
        nucleus = ndi.binary_fill_holes(largest_component(nucleus))
        cell = ndi.binary_fill_holes(largest_component(cell | nucleus, near=nucleus)) | nucleus
    labels = np.zeros(nucleus.shape, np.uint8)
    labels[cell] = 1
    labels[nucleus] = 2
    return labels
