"""Colour cues: a stained nucleus is the darkest thing in a cell, the slide the brightest.

Colour draws boundaries; the explanation chooses which dark blob is the nucleus that drove the
decision. Also the non-XAI baseline's rough map (k-means on Lab).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .grouping import kmeans
from .refine import dilate

#: least lightness difference (Lab L, 0-255) for the rough nucleus to count as two colour classes
MIN_NUCLEUS_CONTRAST = 12.0


def lightness(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.medianBlur(rgb, 3), cv2.COLOR_RGB2Lab)[..., 0].astype(np.float32)


#: lightness difference (Lab L) between the halves of a nucleus seed above which it is split again
RESPLIT_CONTRAST = 15.0


def dark_part(rgb: np.ndarray, region: np.ndarray, grow: bool = True,
              min_contrast: float = MIN_NUCLEUS_CONTRAST) -> np.ndarray:
    """The darker colour class (Otsu on Lab lightness) inside ``region``; the whole region when it
    holds one colour class only (its two Otsu classes differ by less than MIN_NUCLEUS_CONTRAST)."""
    from skimage.filters import threshold_otsu

    region = np.asarray(region, bool)
    if region.sum() < 16:
        return region
    L = lightness(rgb)
    values = L[region]
    if np.ptp(values) == 0:
        return region
    t = threshold_otsu(values)
    dark, light = values[values <= t], values[values > t]
    if light.size == 0 or light.mean() - dark.mean() < min_contrast:
        return region
    seed = region & (t >= L)
    if not grow:
        return seed
    # a partial explanation covers part of the nucleus: take the whole dark blob it touches,
    # but no farther than the region's own equivalent radius
    reach = dilate(region, max(1, int(round(np.sqrt(region.sum() / np.pi)))))
    lab, _ = ndi.label((t >= L) & reach)
    touched = np.unique(lab[seed])
    return np.isin(lab, touched[touched > 0])


def darkest_colour_class(rgb: np.ndarray) -> np.ndarray:
    """The darkest of three colour classes of the image (k-means on Lab, as the baseline)."""
    return colour_rough_map(rgb) == 2


def colour_nucleus_seed(rgb: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """The darkest-colour blobs that the explanation's candidate region touches.

    Colour draws the boundary (a stained nucleus is the darkest thing in the cell); the
    explanation chooses which dark blob is the nucleus that drove the decision (a crop often holds
    neighbouring nuclei or debris). Falls back to :func:`dark_part` when no dark blob is touched.
    """
    candidate = np.asarray(candidate, bool)
    dark = dark_part(rgb, darkest_colour_class(rgb))
    lab, n = ndi.label(dark)
    if n == 0 or not candidate.any():
        return dark_part(rgb, candidate)
    overlap = np.bincount(lab[candidate], minlength=n + 1)
    overlap[0] = 0
    if overlap.max() == 0:
        return dark_part(rgb, candidate)
    # blobs touched by a real share of the candidate (not a stray pixel of its rim)
    keep = np.flatnonzero(overlap >= max(1, 0.1 * overlap.max()))
    seed = np.isin(lab, keep)
    # dark cytoplasm (normal cells stained dark) can share the darkest class with a small
    # nucleus: split the seed again by lightness while its two halves still differ clearly
    for _ in range(2):
        smaller = dark_part(rgb, seed, grow=False, min_contrast=RESPLIT_CONTRAST)
        if smaller.sum() == seed.sum() or not smaller.any():
            break
        seed = smaller
    return seed


def background_like(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the brightest of three lightness classes (multi-Otsu): where the slide shows
    through. Unstained background is the brightest thing in a bright-field Pap smear image."""
    from skimage.filters import threshold_multiotsu

    L = lightness(rgb)
    if np.ptp(L) < 3:
        return np.zeros(L.shape, bool)
    try:
        t = threshold_multiotsu(L, classes=3)
    except ValueError:  # too few grey levels for three classes
        return np.zeros(L.shape, bool)
    return t[-1] < L


def colour_rough_map(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """Non-XAI rough map: k-means (k=3) on the median-filtered Lab image; darkest = nucleus,
    middle = cytoplasm, brightest = background."""
    lab = cv2.cvtColor(cv2.medianBlur(rgb, 5), cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(seed)
    sample = lab if len(lab) <= 4096 else lab[rng.choice(len(lab), 4096, replace=False)]
    k = min(3, len(np.unique(sample, axis=0)))
    if k < 2:
        return np.zeros(rgb.shape[:2], np.uint8)
    centres, _ = kmeans(sample, k)
    assign = ((lab[:, None, :] - centres[None].astype(np.float32)) ** 2).sum(-1).argmin(1)
    order = np.argsort(-centres[:, 0])  # brightest first
    rank = np.empty(k, int)
    rank[order] = np.arange(k) + (3 - k)
    return rank[assign].reshape(rgb.shape[:2]).astype(np.uint8)
