"""Finding the cells of a field of view: the slide's background, the nuclei (dark, compact
objects) and each nucleus's cell (the foreground split among the nuclei).

Weakly supervised like the rest: nothing here was fitted to masks; the few constants are
physical (a nucleus is darker than its cytoplasm, compact, and not smaller than a few dozen
pixels at the resolution Pap smear images are taken) and were checked on the development fields.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

#: a foreground blob smaller than this (px) is debris, not a cell
MIN_CELL_AREA = 400
#: a dark object smaller than this (px) is a speck or a chromatin grain, not a nucleus
MIN_NUCLEUS_AREA = 60
#: a nucleus is compact: area / convex area at least this
MIN_NUCLEUS_SOLIDITY = 0.8


def lab_image(rgb: np.ndarray) -> np.ndarray:
    """Lab (OpenCV scaling, float32) of a median-filtered copy: stain colours without sensor noise."""
    return cv2.cvtColor(cv2.medianBlur(rgb, 5), cv2.COLOR_RGB2Lab).astype(np.float32)


def background_colour(lab: np.ndarray) -> np.ndarray:
    """The slide's colour: the Lab mean of the pixels at the brightest lightness peak of the image's
    brighter half that holds at least MIN_SLIDE_SHARE % of its pixels (light passes the bare
    slide unabsorbed, so it is brighter than any cell, though in a crowded field not the most common)."""
    lightness = lab[..., 0]
    hist = np.bincount(np.clip(lightness, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    hist = np.convolve(hist, np.ones(5) / 5, mode="same")
    upper = int(np.percentile(lightness, 50))
    mass = np.convolve(hist, np.ones(9), mode="same") / lightness.size  # share within +-4 units
    peaks = [p for p in range(upper, 256) if hist[p] > 0 and hist[p] >= hist[max(0, p - 1)]
             and hist[p] >= hist[min(255, p + 1)] and mass[p] >= MIN_SLIDE_SHARE / 100]
    peak = max(peaks) if peaks else upper + int(np.argmax(hist[upper:]))
    near = np.abs(lightness - peak) <= 4
    return lab[near].mean(0) if near.any() else np.median(lab.reshape(-1, 3), 0)


def slide_colour(rgb: np.ndarray, max_pixels: int = 1_000_000, *, lab: np.ndarray | None = None,
                 background: np.ndarray | None = None) -> np.ndarray:
    """The bare slide's mean RGB colour (float, 3) in an RGB uint8 image: the light that passed
    no stain, by which each pixel's transmittance is measured. Its pixels are found like
    :func:`background_colour`'s, on a regular subsample of at most `max_pixels` (a colour, not a
    map: a slide of gigapixels needs no more). ``lab`` and ``background``: the whole image's
    :func:`lab_image` and its :func:`background_colour`, when the caller has them (used only when
    the image is taken whole, so the result is the same)."""
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / max_pixels))))
    sub = np.ascontiguousarray(rgb[::step, ::step, :3])
    if step > 1 or lab is None:
        lab, background = lab_image(sub), None
    background = background_colour(lab) if background is None else background
    near = np.abs(lab[..., 0] - background[0]) <= 4  # the slide's lightness peak
    return (sub[near] if near.any() else sub.reshape(-1, 3)).astype(np.float64).mean(0)


#: the slide's own variation (noise, an uneven lamp) reaches at most this far (Lab units) from
#: its colour: a threshold past it means the image's lower half holds stained matter (measured:
#: 3.0-4.6 on the development fields, 16-31 on the real grey fields with their lamp gradient, up
#: to 272 on crowded composed fields: benchmarks/dev/slide_noise_spread.py)
MAX_SLIDE_SPREAD = 50.0
#: in a crowded field, enclosed slide larger than this (px) is a gap between cells, not a hole
CROWDED_LARGEST_HOLE = MIN_CELL_AREA
#: the least share of the image taken as slide when little of it shows (%)
MIN_SLIDE_SHARE = 5.0


def _slide_threshold(distance: np.ndarray, lower_percent: float) -> float:
    """Above the slide's noise: median + 6 robust standard deviations of the `lower_percent` %
    of pixels nearest the slide's colour (at least 3 Lab units)."""
    low = distance[distance <= np.percentile(distance, lower_percent)]
    centre = float(np.median(low))
    spread = 1.4826 * float(np.median(np.abs(low - centre))) + 0.25
    return max(3.0, centre + 6 * spread)


def _first_peak_share(distance: np.ndarray) -> float:
    """The share of pixels in the distance histogram's first peak (the slide), as twice those
    below its mode, between MIN_SLIDE_SHARE % and a half."""
    top = min(float(distance.max()), MAX_SLIDE_SPREAD)
    hist, edges = np.histogram(distance, bins=np.arange(0.0, top + 0.2, 0.1))
    hist = np.convolve(hist, np.ones(5) / 5, mode="same")
    mode = edges[int(np.argmax(hist))] + 0.05
    return float(np.clip(2 * (distance <= mode).mean(), MIN_SLIDE_SHARE / 100, 0.5))


def _stained(rgb: np.ndarray, lab: np.ndarray | None,
             background: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Pixels farther from the slide's colour than its own noise, and whether the field is crowded
    (``background``: ``background_colour(lab)``, when the caller has it)."""
    if lab is None:
        lab, background = lab_image(rgb), None
    background = background_colour(lab) if background is None else background
    distance = np.linalg.norm(lab - background, axis=-1)
    distance = cv2.GaussianBlur(distance, (0, 0), 2.0)
    threshold = _slide_threshold(distance, 50.0)
    crowded = threshold > MAX_SLIDE_SPREAD
    if crowded:
        # the image's lower half is not all slide: a crowded field where little slide shows. The
        # slide is then the distance histogram's first peak; twice its lower half estimates its share
        threshold = _slide_threshold(distance, 100.0 * _first_peak_share(distance))
    return distance > threshold, crowded


def stained_mask(rgb: np.ndarray, lab: np.ndarray | None = None) -> np.ndarray:
    """Pixels that are not bare slide, at any resolution (no size filter: a slide's thumbnail)."""
    return _stained(rgb, lab)[0]


def foreground_and_slide(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`foreground_mask` and :func:`slide_colour` of one image, its Lab image and background
    colour worked out once for both."""
    lab = lab_image(rgb)
    background = background_colour(lab)
    return foreground_mask(rgb, lab, background), slide_colour(rgb, lab=lab, background=background)


def foreground_mask(rgb: np.ndarray, lab: np.ndarray | None = None,
                    background: np.ndarray | None = None) -> np.ndarray:
    """Pixels that are not the slide: smoothed colour distance from the background colour above
    the background's own noise (median + 6 robust standard deviations, at least 3 Lab units);
    holes filled, debris smaller than MIN_CELL_AREA dropped. ``lab`` / ``background``: the
    image's :func:`lab_image` / its :func:`background_colour`, when the caller has them."""
    from skimage.morphology import remove_small_holes

    mask, crowded = _stained(rgb, lab, background)
    # what slide shows in a crowded field are small gaps between cells: not holes to fill
    largest_hole = min(0.05 * mask.size, CROWDED_LARGEST_HOLE) if crowded else 0.05 * mask.size
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(bool)
    # holes inside cells are filled; not the whole slide when a dark frame or debris encloses it
    mask = remove_small_holes(mask, max_size=int(largest_hole))
    labels, n = ndi.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= MIN_CELL_AREA
        keep[0] = False
        mask = keep[labels]
    return mask


#: a nucleus is darker than the mean lightness of the foreground around it (this window, px) ...
NUCLEUS_WINDOW = 151
#: ... by one of these many Lab lightness units: the smallest at which it stands out as a compact
#: object (overlapping cytoplasm is darker too, and merges with a nucleus at low contrasts)
NUCLEUS_CONTRASTS = (12.0, 20.0, 30.0, 45.0, 65.0)
#: a nucleus's median contrast is at least this (folds of overlapping cytoplasm are fainter)
MIN_NUCLEUS_MEDIAN_CONTRAST = 22.0
#: a compact object found at a higher contrast inside one found at a lower contrast replaces it
#: when it is smaller than this fraction of it (a nucleus inside darker, overlapping cytoplasm);
#: a larger one is the same nucleus's darker core
MAX_CHILD_FRACTION = 0.3
#: ... and at least this many times darker (median contrast): a chromatin clump inside a nucleus
#: is only a little darker than the nucleus, a nucleus inside overlapping cytoplasm much darker
CHILD_DARKNESS_RATIO = 2.0
#: at most this share of a nucleus's outline may lie on its cell's outline
MAX_NUCLEUS_RIM_SHARE = 0.25
#: lightness is smoothed by this sigma (px) before contrasts (0: not; 1-2 px merged a pale
#: nucleus's chromatin clumps but lost small ISBI nuclei on the development fields)
NUCLEUS_SMOOTH = 0.0
#: a nucleus is at most this elongated (major / minor axis); folds and dark cell rims are more
MAX_NUCLEUS_ELONGATION = 3.0


def find_nuclei(rgb: np.ndarray, foreground: np.ndarray | None = None,
                lab: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (int32, 0 none) of the nuclei: the dark, compact objects of the foreground.

    Dark: lightness below the mean lightness of the foreground around it (NUCLEUS_WINDOW px) by a
    contrast of NUCLEUS_CONTRASTS (a stained nucleus is darker than its own cytoplasm, whatever the
    stain). Compact: solidity >= MIN_NUCLEUS_SOLIDITY, area >= MIN_NUCLEUS_AREA. Each contrast is
    tried from the lowest: a dark region that is not compact (a nucleus merged with darker,
    overlapping cytoplasm) is looked at again at the next contrast, where its nucleus separates.
    """
    from skimage.measure import regionprops

    lab = lab_image(rgb) if lab is None else lab
    foreground = foreground_mask(rgb, lab) if foreground is None else foreground
    out = np.zeros(rgb.shape[:2], np.int32)
    if foreground.sum() < MIN_NUCLEUS_AREA:
        return out
    lightness = lab[..., 0]
    fg = foreground.astype(np.float32)
    size = (NUCLEUS_WINDOW, NUCLEUS_WINDOW)
    local = cv2.boxFilter(lightness * fg, -1, size, normalize=False, borderType=cv2.BORDER_REFLECT) / \
        np.maximum(cv2.boxFilter(fg, -1, size, normalize=False, borderType=cv2.BORDER_REFLECT), 1.0)
    smooth = cv2.GaussianBlur(lightness, (0, 0), NUCLEUS_SMOOTH) if NUCLEUS_SMOOTH > 0 else lightness
    contrast = np.where(foreground, local - smooth, 0)
    # the foreground's outline, a few pixels wide: a nucleus has cytoplasm all around it
    edge = foreground & ~cv2.erode(foreground.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    opening = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    k = 0
    areas: dict[int, int] = {}
    darknesses: dict[int, float] = {}
    children: dict[int, list] = {}
    for level in NUCLEUS_CONTRASTS:
        dark = cv2.morphologyEx((contrast > level).astype(np.uint8), cv2.MORPH_OPEN, opening).astype(bool)
        blobs, _ = ndi.label(ndi.binary_fill_holes(dark))
        for region in regionprops(blobs):
            if region.area < MIN_NUCLEUS_AREA or region.solidity < MIN_NUCLEUS_SOLIDITY:
                continue
            if region.axis_major_length > MAX_NUCLEUS_ELONGATION * max(region.axis_minor_length, 1.0):
                continue  # a fold or a cell's dark rim, not a nucleus
            r0, c0, r1, c1 = region.bbox
            darkness = float(np.median(contrast[r0:r1, c0:c1][region.image]))
            if darkness < MIN_NUCLEUS_MEDIAN_CONTRAST:
                continue  # barely darker than its surroundings: overlapping cytoplasm
            if _rim_share(region.image, edge[r0:r1, c0:c1]) > MAX_NUCLEUS_RIM_SHARE:
                continue  # lies on the cell's outline: a dark rim or fold of cytoplasm
            window = out[r0:r1, c0:c1]
            under = np.unique(window[region.image])
            under = under[under > 0]
            if under.size == 0:
                k += 1
                window[region.image] = k
                areas[k], darknesses[k] = region.area, darkness
            elif (under.size == 1 and region.area < MAX_CHILD_FRACTION * areas[int(under[0])]
                  and darkness > CHILD_DARKNESS_RATIO * darknesses[int(under[0])]):
                # a much smaller compact object inside one found at a lower contrast: the lower
                # one was darker cytoplasm (overlap) around the real nucleus
                children.setdefault(int(under[0]), []).append((r0, c0, r1, c1, region.image, darkness))
        for parent, found in children.items():
            out[out == parent] = 0
            del areas[parent], darknesses[parent]
            for r0, c0, r1, c1, image, darkness in found:
                k += 1
                out[r0:r1, c0:c1][image] = k
                areas[k], darknesses[k] = int(image.sum()), darkness
        children.clear()
    return _drop_small_companions(out, foreground)


#: within one foreground blob, a nucleus candidate smaller than this fraction of the blob's largest
#: is a dark speck or a chromatin clump beside the nucleus, not another cell's nucleus
MIN_COMPANION_FRACTION = 0.2


def _rim_share(mask: np.ndarray, edge: np.ndarray) -> float:
    """Share of a mask's outline pixels that lie on ``edge``."""
    outline = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float((outline & edge).sum() / max(1, outline.sum()))


def _drop_small_companions(nuclei: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    if nuclei.max() < 2:
        return nuclei
    blobs, _ = ndi.label(foreground | (nuclei > 0))
    areas = np.bincount(nuclei.ravel())
    ids = np.arange(len(areas))
    blob_of = np.zeros(len(areas), int)
    blob_of[nuclei[nuclei > 0]] = blobs[nuclei > 0]
    keep = np.zeros(len(areas), bool)
    for b in np.unique(blob_of[1:]):
        members = ids[1:][blob_of[1:] == b]
        largest = areas[members].max()
        keep[members[areas[members] >= MIN_COMPANION_FRACTION * largest]] = True
    kept = ids[keep]
    relabel = np.zeros(len(areas), np.int32)
    relabel[kept] = np.arange(1, len(kept) + 1)
    return relabel[nuclei]


#: weight of the colour edges against the distance from the nuclei when cells are split
EDGE_WEIGHT = 0.0


def partition_cells(rgb: np.ndarray, foreground: np.ndarray, nuclei: np.ndarray,
                    lab: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (int32) of the cells: the foreground split among the nuclei (same ids).

    Each foreground pixel goes to the nucleus that reaches it first through the foreground,
    distance from the nuclei plus EDGE_WEIGHT x the colour edges crossed (a marker-controlled
    watershed): where cells overlap, the split follows the nearest nucleus, as one labels layer
    must. Foreground without a nucleus is left out.
    """
    from skimage.segmentation import watershed

    if nuclei.max() == 0:
        return np.zeros(nuclei.shape, np.int32)
    elevation = ndi.distance_transform_edt(nuclei == 0).astype(np.float32)
    if EDGE_WEIGHT > 0:
        lab = lab_image(rgb) if lab is None else lab
        grad = np.zeros(rgb.shape[:2], np.float32)
        for c in range(3):
            channel = cv2.GaussianBlur(lab[..., c], (0, 0), 1.5)
            grad += cv2.Sobel(channel, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(channel, cv2.CV_32F, 0, 1) ** 2
        elevation += EDGE_WEIGHT * np.sqrt(grad)
    return watershed(elevation, nuclei, mask=foreground | (nuclei > 0)).astype(np.int32)
