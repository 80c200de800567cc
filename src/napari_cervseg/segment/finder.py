"""A learned cell and nucleus finder for fields of view, trained without any ground-truth mask.

One small U-Net looks at the field at a working scale and predicts, per pixel:

- p(nucleus), p(nucleus boundary) and p(cell) (any cell covers this pixel);
- for pixels inside a nucleus, the distances along ``n_rays`` directions from that pixel to the
  outline of *its own* cell (StarDist's star-convex polygons, Schmidt et al. 2018, anchored on
  the nucleus rather than the cell's centre).

Nuclei are the watershed of p(nucleus) from seeds inside the boundary map; each nucleus's cell is
the polygon its rays draw, cut to where p(cell) says there is cytoplasm. Polygons may overlap, so
a cell under another cell's cytoplasm keeps its full extent (what one labels layer cannot show).

The working scale is fixed (FIRST_SCALE, chosen on the development fields) unless the caller
gives one: the finder's own output could not tell an image's magnification (see
:meth:`CellFinder.choose_scale`).

Training data come from `workflows/finder_training.py`: fields composed from the training split's
single cells, each cell's extent and nucleus from the self-trained segmenter (pseudo-labels).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from .student import check_widths

FINDER_DIR = Path(__file__).resolve().parent.parent / "weights" / "finders"
ARCHITECTURE = "finder-unet"
#: ray distances are predicted in units of this many working-scale pixels
RAY_UNIT = 32.0
#: the image is scaled by this much before the finder looks at it: chosen among 0.5, 0.7 and 1.0
#: on the development fields (benchmarks/results/dev/finder_postprocess.md: 0.7 found more of the
#: small ISBI nuclei and caught more abnormal Herlev cells than 0.5)
FIRST_SCALE = 0.7
#: the working scale stays within these bounds
SCALE_BOUNDS = (0.15, 1.6)
#: the network sees an image of at most this many working pixels a side in one pass (a field of
#: view); a larger image (a slide tile) in tiles of NET_TILE_LARGE, with this overlap: a 512 px
#: tile's activations take about half the memory of a 768 px one's, which sets a slide worker's
#: peak (1,662 -> 1,408 MB), for 6-9 % more time (benchmarks/results/finder_rule.md)
NET_TILE = 768
NET_TILE_LARGE = 512
NET_OVERLAP = 96
#: a nucleus smaller than this many working pixels (about 3 px across) is a speck
MIN_NUCLEUS_PIXELS = 8
#: a cell (polygon, or a nucleus-less blob of cell probability) smaller than this many working
#: pixels is debris
MIN_CELL_PIXELS = 150
#: a nucleus-less blob must also be at least as large as the smallest cell found with a nucleus in
#: the same image (a blob smaller than every cell is slide speckle, not a cell whose nucleus was
#: missed); no constant, see benchmarks/results/finder_rule.md
NUCLEUS_LESS_AS_LARGE_AS_A_CELL = True
#: a nucleus whose mean p(nucleus) is below this is not kept (texture of overlapping cytoplasm);
#: 0.75 (from FINDINGS item 7) against 0: a little more precise on the development fields
MIN_NUCLEUS_SCORE = 0.75
#: of two found cells whose extents overlap by more than this IoU, the one with the less sure
#: nucleus is a duplicate (a nucleus found in pieces) and is dropped; overlapping cells overlap
#: less. 0.5 against none on the development fields: Herlev nucleus precision 0.64 -> 0.72
MAX_DUPLICATE_IOU = 0.5


#: look at each tile twice, as it is and turned 180 degrees, and average the two. Off: on five
#: validation compositions Herlev nucleus F1 rose (mean 0.841 -> 0.875), but ISBI's fell by more
#: than its rule allowed (0.976 -> 0.964) and a field took 1.5-1.9x as long
#: (benchmarks/results/finder_rule.md, "The finder looking twice"). Set it True from a script for
#: the slower, more careful look
TWO_VIEWS = False


#: look at each nucleus again, in a window around it turned 180 degrees; one that look does not
#: see is marked (FoundCell.confirmed) and the field route leaves it out if its cell is called
#: normal (FieldResult.left_out). Off: on Herlev validation fields it removed false cells (nucleus
#: F1 +0.008), but on the real fields at the default operating point a third of what it left out
#: looked like real epithelial nuclei (benchmarks/results/finder_rule.md, "The second look for
#: screening" and "... taken back"). Set it True from a script for Herlev-like colour material
CONFIRM_TURNED = False
#: the window: the nucleus's box widened by this many working px each side (four of the
#: network's coarsest 16 px steps: the nucleus and what lies around it)
CONFIRM_MARGIN = 64


class FinderError(ValueError):
    pass


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FinderNet(nn.Module):
    """U-Net with three probability maps (nucleus, nucleus boundary, cell) and ``n_rays`` distances."""

    def __init__(self, widths=(12, 24, 48, 96, 128), n_rays: int = 32):
        super().__init__()
        self.widths, self.n_rays = tuple(int(w) for w in widths), int(n_rays)
        self.down = nn.ModuleList()
        cin = 3
        for w in self.widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList(_block(self.widths[i + 1] + self.widths[i], self.widths[i])
                                for i in reversed(range(len(self.widths) - 1)))
        self.maps = nn.Conv2d(self.widths[0], 3, 1)
        # the rays come from the half-resolution decoder level (a wider head at a quarter of the cost)
        self.rays = nn.Sequential(nn.Conv2d(self.widths[1], 64, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, self.n_rays, 1))

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this."""
        return 2 ** (len(self.widths) - 1)

    def _decode(self, x):
        """(the full-resolution decoder features, the half-resolution ones)."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        half = None
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=False):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
            if x.shape[1] == self.widths[1]:
                half = x
        return x, half

    def forward(self, x, activate_rays: bool = True):
        """(map logits (N, 3, h, w), ray distances (N, n_rays, h, w) in RAY_UNITs); with
        ``activate_rays=False`` the rays before their softplus (inference applies it only to the
        pixels whose rays are read: a full map's softplus is most of a field's ray cost)."""
        x, half = self._decode(x)
        rays = F.interpolate(self.rays(half), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.maps(x), F.softplus(rays) if activate_rays else rays

    def forward_half_rays(self, x):
        """(map logits (N, 3, h, w), ray logits (N, n_rays, h / 2, w / 2) before their upsampling
        and softplus): training reads the rays only at nucleus pixels (:func:`rays_at`), which
        spares it upsampling and activating the whole ray map (a quarter of a step's time)."""
        x, half = self._decode(x)
        return self.maps(x), self.rays(half)


def rays_at(half_rays: torch.Tensor, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Ray distances (n_points, n_rays) at integer full-resolution pixels ``points`` (n_points, 3:
    image index, row, col) of ``FinderNet.forward``'s (h, w) = ``size`` map, read from
    ``forward_half_rays``'s half-resolution logits: the same bilinear upsampling (half-pixel
    centres, edges clamped) followed by the softplus, at those pixels only."""
    n, n_rays, hh, hw = half_rays.shape
    out = half_rays.new_empty((len(points), n_rays))
    for i in range(n):
        at = points[:, 0] == i
        if not bool(at.any()):
            continue
        rc = points[at, 1:].to(half_rays.dtype)
        # F.interpolate's source coordinate of a pixel, then grid_sample's normalised coordinate
        src_y = (rc[:, 0] + 0.5) * (hh / size[0]) - 0.5
        src_x = (rc[:, 1] + 0.5) * (hw / size[1]) - 0.5
        grid = torch.stack([(2 * src_x + 1) / hw - 1, (2 * src_y + 1) / hh - 1], -1)[None, None]
        sampled = F.grid_sample(half_rays[i:i + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[at] = sampled[0, :, 0].T
    return F.softplus(out)


def ray_directions(n_rays: int) -> np.ndarray:
    """(n_rays, 2) unit vectors (dy, dx), counter-clockwise from +x."""
    angles = 2 * np.pi * np.arange(n_rays) / n_rays
    return np.stack([np.sin(angles), np.cos(angles)], 1)


def star_distances(mask: np.ndarray, points: np.ndarray, n_rays: int, step: float = 0.5) -> np.ndarray:
    """Distances (len(points), n_rays) from each (row, col) point along each ray to where it first
    leaves ``mask`` (the image's border counts as leaving)."""
    points = np.asarray(points, np.float32).reshape(-1, 2)
    out = np.zeros((len(points), n_rays), np.float32)
    if not len(points):
        return out
    h, w = mask.shape
    dirs = ray_directions(n_rays).astype(np.float32)
    alive = np.ones((len(points), n_rays), bool)
    limit = int(math.hypot(h, w) / step) + 2
    for i in range(1, limit):
        t = i * step
        rr = np.rint(points[:, None, 0] + t * dirs[None, :, 0]).astype(np.int64)
        cc = np.rint(points[:, None, 1] + t * dirs[None, :, 1]).astype(np.int64)
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        inside[inside] = mask[rr[inside], cc[inside]]
        leaving = alive & ~inside
        out[leaving] = t
        alive &= inside
        if not alive.any():
            break
    out[alive] = limit * step
    return out


def field_input(rgb: np.ndarray) -> np.ndarray:
    """Float32 (H, W, 3) network input: the image over the slide's brightness (a transmittance, so
    slide colour and lamp brightness matter less), scaled to about [-1, 1]."""
    rgb = rgb.astype(np.float32)
    bright = np.percentile(rgb.reshape(-1, 3), 99, axis=0)
    return np.clip(rgb / np.maximum(bright, 1.0), 0, 1.25) * 2 - 1


@dataclass
class FoundCell:
    """One cell the finder found, at the image's full resolution.

    ``box`` is (row0, col0, row1, col1); ``extent`` a bool mask of that box (the whole cell, also
    where another cell covers it); ``nucleus`` a bool mask of the same box (empty when the cell
    was found without a nucleus); ``score`` the mean p(nucleus) over the nucleus (p(cell) over the
    extent when there is none)."""

    box: tuple[int, int, int, int]
    extent: np.ndarray
    nucleus: np.ndarray
    score: float
    #: cytoplasm of this cell that its polygon did not reach, in a blob of p(cell) holding no other
    #: cell (row and column offset from ``box``'s corner, bool mask): cropped, judged and reported
    #: with the cell (``workflows.fields._with_missed_cytoplasm``)
    missed: tuple[int, int, np.ndarray] | None = None
    #: the same, in a clump, given to this cell by star ratio (as ``missed``)
    clump_missed: tuple[int, int, np.ndarray] | None = None
    #: the star-convex polygon it came from: (centre (row, col), ray distances (n_rays,)), both in
    #: working px (None for a cell found without a nucleus)
    star: tuple[tuple[float, float], np.ndarray] | None = None
    #: False when a second look at the nucleus, turned 180 degrees, did not see it
    #: (:meth:`CellFinder.confirms`): the field route leaves such a cell out if it is called
    #: normal. Read it through :meth:`is_confirmed`, which takes a look still pending
    confirmed: bool = True
    #: that look, not taken yet (a function of no argument; None once taken, or when there is none)
    second_look: Callable[[], bool] | None = field(default=None, repr=False, compare=False)

    def is_confirmed(self) -> bool:
        """Whether the finder's second look sees this cell's nucleus (looked at when first asked)."""
        if self.second_look is not None:
            self.confirmed, self.second_look = bool(self.second_look()), None
        return self.confirmed

    @property
    def centre(self) -> tuple[float, float]:
        mask = self.nucleus if self.nucleus.any() else self.extent
        rr, cc = np.nonzero(mask)
        return self.box[0] + float(rr.mean()), self.box[1] + float(cc.mean())


class NucleusRays:
    """The finder's ray distances (working px) at the pixels where p(nucleus) >= 0.5, read like a
    dense (n_rays, h, w) map at those pixels: ``rays[:, rows, cols]`` -> (n_rays, len(rows)).
    ``pixels`` (flat indices) and ``values`` (n, n_rays) come in pieces, one per tile, in the
    order the tiles were written."""

    def __init__(self, shape, n_rays: int, pixels: list[np.ndarray], values: list[np.ndarray]):
        self.shape = (n_rays, *shape)
        flat = np.concatenate(pixels) if pixels else np.zeros(0, np.int64)
        order = np.argsort(flat, kind="stable")
        # a pixel in two tiles' overlap is given twice: the later tile's value wins, as it does
        # in the probability maps
        last = np.ones(order.size, bool)
        last[:-1] = flat[order][1:] != flat[order][:-1]
        order = order[last]
        self._pixels = flat[order]
        self._values = (np.concatenate(values) if values else np.zeros((0, n_rays), np.float32))[order]

    def __getitem__(self, index):
        if not (isinstance(index, tuple) and len(index) == 3 and index[0] == slice(None)):
            raise IndexError("NucleusRays is read as rays[:, rows, cols]")
        flat = np.asarray(index[1], np.int64) * self.shape[2] + np.asarray(index[2], np.int64)
        at = np.searchsorted(self._pixels, flat)
        if flat.size and (at.max() >= self._pixels.size or not np.array_equal(self._pixels[at], flat)):
            raise IndexError("a ray was read where p(nucleus) < 0.5: only nucleus pixels' rays are kept")
        return self._values[at].T


class CellFinder:
    """A trained finder with its card; ``find(rgb)`` -> list of :class:`FoundCell`."""

    def __init__(self, net: FinderNet, card: dict, source: str = "<in memory>"):
        self.net = net.eval()
        self.card = card
        self.source = source
        #: the median nucleus diameter (working px) of the fields it was trained on
        self.nucleus_diameter = float(card.get("nucleus_diameter", 16.0))
        self.lock = threading.RLock()

    @torch.no_grad()
    def maps(self, rgb: np.ndarray, scale: float) -> tuple[np.ndarray, NucleusRays]:
        """(probabilities (3, h, w): nucleus, boundary, cell; the rays in working px, kept where
        p(nucleus) >= 0.5, the only pixels whose rays are read) of ``rgb`` resized by ``scale``,
        tile by tile."""
        return self._maps_of(working_input(rgb, scale))

    @torch.no_grad()
    def _maps_of(self, x: np.ndarray) -> tuple[np.ndarray, NucleusRays]:
        sh, sw = x.shape[:2]
        probs = np.zeros((3, sh, sw), np.float32)
        ray_pixels: list[np.ndarray] = []
        ray_values: list[np.ndarray] = []
        m = self.net.multiple
        device = next(self.net.parameters()).device
        side = NET_TILE if max(sh, sw) <= NET_TILE else NET_TILE_LARGE
        step = side - NET_OVERLAP
        for r0 in range(0, max(sh - NET_OVERLAP, 1), step):
            for c0 in range(0, max(sw - NET_OVERLAP, 1), step):
                r1, c1 = min(sh, r0 + side), min(sw, c0 + side)
                tile = x[r0:r1, c0:c1]
                th, tw = tile.shape[:2]
                ph, pw = (-th) % m, (-tw) % m
                tile = np.pad(tile, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(th, tw) > max(ph, pw)
                              else "edge")
                t = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1)[None].to(device)
                p, dist, activated = self._look(t)
                p = p[:, :th, :tw].cpu().numpy()
                # each tile owns its core; the overlap's outer half belongs to the neighbour
                a0 = 0 if r0 == 0 else NET_OVERLAP // 2
                b0 = 0 if c0 == 0 else NET_OVERLAP // 2
                core = p[:, a0:, b0:]
                probs[:, r0 + a0:r1, c0 + b0:c1] = core
                # a dense ray map is n_rays floats per pixel (600 MB for a 3072 px slide tile at
                # scale 0.7); only nucleus pixels' rays are ever read
                rr, cc = np.nonzero(core[0] >= 0.5)
                if rr.size:
                    d = dist[:, a0:th, b0:tw][:, torch.from_numpy(rr), torch.from_numpy(cc)]
                    d = (d if activated else F.softplus(d)).cpu().numpy()
                    ray_pixels.append((rr + r0 + a0).astype(np.int64) * sw + (cc + c0 + b0))
                    ray_values.append(d.T * RAY_UNIT)
        return probs, NucleusRays((sh, sw), self.net.n_rays, ray_pixels, ray_values)

    def _look(self, tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(probabilities (3, h, w), ray distances (n_rays, h, w), in RAY_UNITs, whether those
        distances are activated already) of one padded (1, 3, h, w) tile; with TWO_VIEWS the mean
        of the tile's and its 180-degree turn's (activated: the mean is of distances)."""
        if not TWO_VIEWS or self.net.n_rays % 2:
            with self.lock:
                logits, dist = self.net(tile, activate_rays=False)
            return torch.sigmoid(logits[0]), dist[0], False
        with self.lock:
            logits, dist = self.net(torch.cat([tile, tile.flip(-2, -1)]))
        probs = torch.sigmoid(logits)
        p = (probs[0] + probs[1].flip(-2, -1)) / 2
        # ray k of the turned view points along ray k + n/2 of the image: turn the indices back
        turned = torch.roll(dist[1].flip(-2, -1), self.net.n_rays // 2, dims=0)
        return p, (dist[0] + turned) / 2, True

    def choose_scale(self, rgb: np.ndarray, scale: float | None = None) -> float:
        """The working scale: ``scale`` if given, else FIRST_SCALE (for images at Herlev's or the
        ISBI fields' magnification; give another scale for other magnifications).

        The finder does not pick its own scale: tried on the development fields, the size of
        what it finds follows the scale it looks at (an image magnified 2x gave cells of about
        the trained size again, fragments of the real ones), so its own output cannot tell."""
        if scale is None:
            return FIRST_SCALE
        if not SCALE_BOUNDS[0] <= float(scale) <= SCALE_BOUNDS[1]:
            raise FinderError(f"finder scale {scale} is outside {SCALE_BOUNDS[0]}..{SCALE_BOUNDS[1]}; it is the"
                              f" factor the image is resized by for the finder ({FIRST_SCALE} for Herlev or ISBI"
                              " magnification, half that for images magnified twice as much)")
        return float(scale)

    def find(self, rgb: np.ndarray, scale: float | None = None, foreground: np.ndarray | None = None
             ) -> list[FoundCell]:
        """Every cell of an RGB uint8 image (any size the memory holds), at full resolution;
        ``foreground``: ``segment.cells.foreground_mask(rgb)`` when the caller has it already."""
        scale = self.choose_scale(rgb, scale)
        stained = stained_at(rgb, scale, foreground) if GIVE_CLUMP_CYTOPLASM else None
        x = working_input(rgb, scale)
        probs, rays = self._maps_of(x)
        look = (lambda box, own, x=x: self.second_look(x, box, own)) if CONFIRM_TURNED else None
        del x  # (held by the looks only: a slide tile's input is tens of MB)
        return cells_from_maps(probs, rays, scale, rgb.shape[:2], stained, second_look=look)

    def confirms(self, x: np.ndarray, box, own: np.ndarray) -> bool:
        """Whether the finder, looking again at the window around one nucleus turned 180 degrees,
        still sees it: mean p(nucleus) over ``own`` (bool mask of the working-scale ``box``, a
        pair of slices of ``x``) at least MIN_NUCLEUS_SCORE."""
        return self.second_look(x, box, own)()

    def second_look(self, x: np.ndarray, box, own: np.ndarray):
        """:meth:`confirms`, deferred: a function of no argument that looks when called (the field
        route asks only for cells called normal). It holds a copy of its window, not ``x``."""
        sh, sw = x.shape[:2]
        r0, c0 = max(0, box[0].start - CONFIRM_MARGIN), max(0, box[1].start - CONFIRM_MARGIN)
        r1, c1 = min(sh, box[0].stop + CONFIRM_MARGIN), min(sw, box[1].stop + CONFIRM_MARGIN)
        window = x[r0:r1, c0:c1].copy()
        inner = (slice(box[0].start - r0, box[0].stop - r0), slice(box[1].start - c0, box[1].stop - c0))
        own = own.copy()
        return lambda: self._sees(window, inner, own)

    @torch.no_grad()
    def _sees(self, window: np.ndarray, inner, own: np.ndarray) -> bool:
        turned = window[::-1, ::-1]
        th, tw = turned.shape[:2]
        m = self.net.multiple
        ph, pw = (-th) % m, (-tw) % m
        turned = np.pad(turned, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(th, tw) > max(ph, pw)
                        else "edge")
        t = torch.from_numpy(np.ascontiguousarray(turned)).permute(2, 0, 1)[None]
        with self.lock:
            logits, _ = self.net(t.to(next(self.net.parameters()).device), activate_rays=False)
        p_nucleus = torch.sigmoid(logits[0, 0, :th, :tw]).cpu().numpy()[::-1, ::-1]
        return bool(p_nucleus[inner][own].mean() >= MIN_NUCLEUS_SCORE)


def working_input(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The network's input (:func:`field_input`) of ``rgb`` resized by ``scale``."""
    h, w = rgb.shape[:2]
    sh, sw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return field_input(small)


def stained_at(rgb: np.ndarray, scale: float, foreground: np.ndarray | None = None) -> np.ndarray:
    """The classic stained-area mask (``segment.cells.foreground_mask``, or ``foreground`` when
    given: that mask of ``rgb``) of ``rgb`` at the working scale of :meth:`CellFinder.maps`."""
    from .cells import foreground_mask

    h, w = rgb.shape[:2]
    sh, sw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if foreground is not None and foreground.shape != (h, w):
        raise ValueError(f"foreground of shape {foreground.shape} for an image of {h} x {w} px")
    mask = (foreground_mask(rgb) if foreground is None else foreground).astype(np.uint8)
    return cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)


def nucleus_instances(p_nucleus: np.ndarray, p_boundary: np.ndarray) -> np.ndarray:
    """Instance labels (int32) of the nuclei: the watershed of p(nucleus) within p >= 0.5, from
    seeds where a pixel is nucleus and not boundary."""
    from skimage.segmentation import watershed

    nucleus = p_nucleus >= 0.5
    seeds, n = ndi.label(nucleus & (p_boundary < 0.5))
    if n == 0:
        return np.zeros(p_nucleus.shape, np.int32)
    sizes = np.bincount(seeds.ravel())
    small = sizes < max(2, MIN_NUCLEUS_PIXELS // 4)
    small[0] = False
    seeds[small[seeds]] = 0
    labels = watershed(-p_nucleus, seeds, mask=nucleus).astype(np.int32)
    # nucleus pixels no seed reached (a boundary-only sliver) stay out
    return labels


def nucleus_contrast(image: np.ndarray, nucleus: np.ndarray, extent: np.ndarray) -> float:
    """1 - (mean grey of ``nucleus``) / (mean grey of a ring 2-6 px around it inside ``extent``):
    how much darker a nucleus is than its own cytoplasm (about 0.3 for a real one; texture on a
    cytoplasm, under 0.1). ``image`` is RGB (grey = the mean of R, G, B) or already grey; all
    three arrays are the same box. NaN when there is no ring (a bare nucleus) or no nucleus."""
    if not nucleus.any():
        return float("nan")
    grey = image.astype(np.float32).mean(2) if image.ndim == 3 else image
    ring = ndi.binary_dilation(nucleus, iterations=6) & ~ndi.binary_dilation(nucleus, iterations=2) & extent
    if not ring.any():
        return float("nan")
    around = float(grey[ring].mean())
    return 1.0 - float(grey[nucleus].mean()) / around if around > 0 else float("nan")


def _polygon(centre, distances: np.ndarray, scale: float) -> np.ndarray:
    """Full-resolution (x, y) vertices of the star-convex polygon around ``centre`` (working px)."""
    dirs = ray_directions(len(distances))
    ys = (centre[0] + distances * dirs[:, 0] + 0.5) / scale - 0.5
    xs = (centre[1] + distances * dirs[:, 1] + 0.5) / scale - 0.5
    return np.stack([xs, ys], 1)


def cells_from_maps(probs: np.ndarray, rays: np.ndarray | NucleusRays, scale: float, shape,
                    stained: np.ndarray | None = None, second_look=None) -> list[FoundCell]:
    """The cells (full resolution ``shape``) of the finder's working-scale maps; ``stained``, the
    image's stained area at working scale (:func:`stained_at`), lets clumps' uncovered cytoplasm
    be given to their cells; ``second_look(box, own)`` (slices of the working maps, the nucleus's
    bool mask there) gives each cell a deferred second look (:meth:`CellFinder.second_look`,
    read by :meth:`FoundCell.is_confirmed`)."""
    h, w = shape[:2]
    p_nucleus, p_boundary, p_cell = probs
    nuclei = nucleus_instances(p_nucleus, p_boundary)
    found: list[FoundCell] = []
    cell_any = p_cell >= 0.5
    covered = np.zeros(p_cell.shape, np.uint8)  # the polygons drawn at working scale
    dirs = ray_directions(rays.shape[0])
    full_p_cell = None
    for k, box in enumerate(ndi.find_objects(nuclei), start=1):
        if box is None:
            continue
        own = nuclei[box] == k
        if own.sum() < MIN_NUCLEUS_PIXELS or p_nucleus[box][own].mean() < MIN_NUCLEUS_SCORE:
            continue
        rr, cc = np.nonzero(own)
        centre = (box[0].start + rr.mean(), box[1].start + cc.mean())
        # the rays of the pixels near the centre (within the nucleus), averaged
        near = (rr - (centre[0] - box[0].start)) ** 2 + (cc - (centre[1] - box[1].start)) ** 2 <= 4.0
        if not near.any():
            near = np.ones_like(rr, bool)
        d = rays[:, box[0].start + rr[near], box[1].start + cc[near]].mean(1)
        poly = _polygon(centre, d, scale)
        x0, y0 = np.floor(poly.min(0)).astype(int)
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
        # the nucleus's full-resolution box must fit too
        nr0, nr1 = int(box[0].start / scale), int(math.ceil(box[0].stop / scale))
        nc0, nc1 = int(box[1].start / scale), int(math.ceil(box[1].stop / scale))
        r0, c0 = max(0, min(y0, nr0)), max(0, min(x0, nc0))
        r1, c1 = min(h, max(y1, nr1)), min(w, max(x1, nc1))
        if r1 <= r0 or c1 <= c0:
            continue
        polygon_mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
        cv2.fillPoly(polygon_mask, [np.round(poly - (c0, r0)).astype(np.int32)], 1)
        if full_p_cell is None:
            full_p_cell = _Upsampled(p_cell, scale, (h, w))
        cell_here = full_p_cell.box(r0, c0, r1, c1) >= 0.5
        nucleus_full = _Upsampled(p_nucleus, scale, (h, w)).box(r0, c0, r1, c1) >= 0.5
        nucleus_full &= _upsample_labels(nuclei, scale, (r0, c0, r1, c1)) == k
        extent = (polygon_mask.astype(bool) & cell_here) | nucleus_full
        if not nucleus_full.any():
            continue
        # one piece: the part connected to the nucleus
        parts, n = ndi.label(extent)
        if n > 1:
            touched = np.unique(parts[nucleus_full])
            extent = np.isin(parts, touched[touched > 0])
        if extent.sum() * scale * scale < MIN_CELL_PIXELS:
            continue
        found.append(FoundCell((int(r0), int(c0), int(r1), int(c1)), extent, nucleus_full,
                               float(p_nucleus[box][own].mean()), star=(centre, d.astype(np.float32)),
                               second_look=None if second_look is None else second_look(box, own)))
        cv2.fillPoly(covered, [np.round(np.stack([centre[1] + d * dirs[:, 1], centre[0] + d * dirs[:, 0]], 1)
                                        ).astype(np.int32)], 1)
    found = suppress_duplicates(found, MAX_DUPLICATE_IOU)
    covered = covered.astype(bool)
    blobs, n_blobs = ndi.label(cell_any)
    if GIVE_MISSED_CYTOPLASM and found:
        if full_p_cell is None:
            full_p_cell = _Upsampled(p_cell, scale, (h, w))
        _give_missed_cytoplasm(found, blobs, n_blobs, scale, (h, w), full_p_cell, stained)
    # cells the finder sees (p(cell)) but whose nucleus it does not: kept as nucleus-less cells
    # when they stand apart. A blob of p(cell) joined to a found cell is cytoplasm its rays did
    # not reach (on the validation-split fields 52 nucleus-less cells, none holding a true cell:
    # benchmarks/results/dev/finder_nucleus_less.md)
    smallest_cell = MIN_CELL_PIXELS
    if NUCLEUS_LESS_AS_LARGE_AS_A_CELL and found:
        smallest_cell = max(smallest_cell, min(c.extent.sum() for c in found) * scale * scale)
    holding_a_cell = np.unique(blobs[covered])
    alone = cell_any & ~np.isin(blobs, holding_a_cell[holding_a_cell > 0])
    rest, n = ndi.label(alone & ~ndi.binary_dilation(covered, iterations=3))
    for k, box in enumerate(ndi.find_objects(rest), start=1):
        if box is None:
            continue
        own = rest[box] == k
        if own.sum() < smallest_cell or _solidity(own) < 0.7:
            continue
        r0, c0 = int(box[0].start / scale), int(box[1].start / scale)
        r1, c1 = min(h, int(math.ceil(box[0].stop / scale))), min(w, int(math.ceil(box[1].stop / scale)))
        extent = _upsample_labels(rest, scale, (r0, c0, r1, c1)) == k
        if full_p_cell is None:
            full_p_cell = _Upsampled(p_cell, scale, (h, w))
        extent &= full_p_cell.box(r0, c0, r1, c1) >= 0.5
        if extent.any():
            found.append(FoundCell((r0, c0, r1, c1), extent, np.zeros_like(extent), float(p_cell[box][own].mean())))
    return found


#: p(cell) that no cell's polygon reaches, in a blob holding exactly one found cell, joins that
#: cell's reported extent (in a blob of several it may be a neighbour's: not given);
#: benchmarks/results/finder_rule.md
GIVE_MISSED_CYTOPLASM = True


def _give_missed_cytoplasm(found: list[FoundCell], blobs: np.ndarray, n_blobs: int, scale: float, shape,
                           full_p_cell: _Upsampled, stained: np.ndarray | None = None) -> None:
    """Give each found cell the p(cell) pixels no extent covers (``blobs``: p(cell) labelled at
    working scale): all of them, as its ``missed``, in a blob that holds that cell and no other;
    in a blob of several cells, as its ``clump_missed``, those on the ``stained`` area (working
    scale; none without it) whose smallest star ratio is this cell's, in pieces touching its extent."""
    sh, sw = blobs.shape
    # which cell's extent covers a working pixel (uint16: half the memory of a slide tile's labels)
    owner = np.zeros((sh, sw), np.uint16 if len(found) < 65535 else np.int32)
    windows = [_working_window(cell, scale, (sh, sw)) for cell in found]  # (read again by clumps)
    for k, window in enumerate(windows, start=1):
        if window is not None:
            (wr0, wc0, wr1, wc1), small = window
            owner[wr0:wr1, wc0:wc1][small] = k
    covered = owner > 0
    pairs = np.unique(np.stack([blobs[covered], owner[covered].astype(np.int64)]), axis=1)
    pairs = pairs[:, pairs[0] > 0]
    blob_ids, counts = np.unique(pairs[0], return_counts=True)
    blob_boxes = ndi.find_objects(blobs, max_label=n_blobs)
    lone: dict[int, list] = {}  # cell -> [(row, col, working-scale bool mask)]
    alone = np.isin(pairs[0], blob_ids[counts == 1])
    for blob, k in zip(pairs[0][alone], pairs[1][alone], strict=True):
        box = blob_boxes[int(blob) - 1]
        piece = (blobs[box] == blob) & (owner[box] == 0)
        if MISSED_THREAD_WIDTH:
            piece = without_threads(piece, owner[box] == k, MISSED_THREAD_WIDTH)
        lone.setdefault(int(k), []).append((box[0].start, box[1].start, piece))
    clumps: dict[int, list] = {}
    if GIVE_CLUMP_CYTOPLASM and stained is not None:
        for blob in blob_ids[counts > 1]:
            cells = [int(k) for k in pairs[1][pairs[0] == blob] if found[int(k) - 1].star is not None]
            box = blob_boxes[int(blob) - 1]
            free = (blobs[box] == blob) & (owner[box] == 0) & stained[box]
            if len(cells) < 2 or not free.any():
                continue
            for k, piece in _clump_pieces(found, windows, cells, free, (box[0].start, box[1].start)):
                clumps.setdefault(k, []).append(piece)
    for attribute, given in (("missed", lone), ("clump_missed", clumps)):
        for k, pieces in given.items():
            upsampled = _upsampled_pieces(pieces, (sh, sw), scale, shape, full_p_cell)
            if upsampled is not None:
                cell = found[k - 1]
                b0, b1, mask = upsampled
                setattr(cell, attribute, (b0 - cell.box[0], b1 - cell.box[1], mask))


#: the missed p(cell) given to a lone cell keeps only what is at least this many working px across
#: (with the cell's extent) and joined to it: speckle on a grainy slide joins p(cell) into threads
#: that run off along the background; a lobe of cytoplasm the rays missed is wider (a cell is about
#: 55 working px across). 0 (the default): kept whole. Not the default: on real fields it also cuts
#: thin cytoplasm, and its ISBI gain was one cell's nucleus lost (benchmarks/results/finder_rule.md)
MISSED_THREAD_WIDTH = 0


def without_threads(piece: np.ndarray, extent: np.ndarray, width: int) -> np.ndarray:
    """The part of ``piece`` (missed p(cell) beside a cell's ``extent``, one frame) that an opening
    of piece and extent together with a disc ``width`` px across keeps, joined to the extent."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
    opened = cv2.morphologyEx((piece | extent).astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    parts, _ = ndi.label(opened)
    joined = np.unique(parts[extent & opened])
    return piece & np.isin(parts, joined[joined > 0])


#: in a blob of p(cell) holding several found cells, the stained p(cell) that no extent covers goes
#: to the cell with the smallest star ratio (benchmarks/results/finder_rule.md)
GIVE_CLUMP_CYTOPLASM = True
#: a pixel farther than this many ray lengths from every cell of its clump stays free (a bound on
#: the work, not a choice: clump_piece_owners.py gave the same pixels at 3 as without a bound)
MAX_STAR_RATIO = 3.0


def _working_window(cell: FoundCell, scale: float, working_shape):
    """((row0, col0, row1, col1), bool mask) of a found cell's extent at working scale, or None."""
    sh, sw = working_shape
    r0, c0, r1, c1 = cell.box
    wr0, wc0 = int(r0 * scale), int(c0 * scale)
    wr1, wc1 = min(sh, int(math.ceil(r1 * scale))), min(sw, int(math.ceil(c1 * scale)))
    if wr1 <= wr0 or wc1 <= wc0:
        return None
    small = cv2.resize(cell.extent.astype(np.uint8), (wc1 - wc0, wr1 - wr0), interpolation=cv2.INTER_NEAREST)
    return (wr0, wc0, wr1, wc1), small.astype(bool)


def star_ratio(centre, distances: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each pixel's distance from ``centre`` over the star polygon's radius in its direction
    (linear between rays): below 1 inside the polygon, 2 at twice its radius."""
    n = len(distances)
    dy, dx = rows - centre[0], cols - centre[1]
    t = (np.arctan2(dy, dx) % (2 * np.pi)) / (2 * np.pi / n)
    i0 = np.floor(t).astype(np.int64) % n
    f = t - np.floor(t)
    radius = distances[i0] * (1 - f) + distances[(i0 + 1) % n] * f
    return np.hypot(dy, dx) / np.maximum(radius, 1.0)


def _clump_pieces(found: list[FoundCell], windows: list, cells: list[int], free: np.ndarray, origin):
    """(cell, (row, col, bool mask)) for the pieces of ``free`` (a clump's uncovered stained
    p(cell), placed at ``origin``, working px) whose smallest star ratio is that cell's and that
    touch its extent (``windows``: each found cell's :func:`_working_window`)."""
    rr, cc = np.nonzero(free)
    rows, cols = (rr + origin[0]).astype(np.float32), (cc + origin[1]).astype(np.float32)
    best = np.full(rr.size, MAX_STAR_RATIO, np.float32)
    chosen = np.zeros(rr.size, np.int64)
    for k in cells:
        centre, distances = found[k - 1].star
        reach = MAX_STAR_RATIO * float(distances.max())
        near = (np.abs(rows - centre[0]) <= reach) & (np.abs(cols - centre[1]) <= reach)
        if not near.any():
            continue
        ratio = star_ratio(centre, distances, rows[near], cols[near])
        closer = ratio < best[near]
        idx = np.flatnonzero(near)[closer]
        best[idx], chosen[idx] = ratio[closer], k
    eight = np.ones((3, 3), bool)
    for k in np.unique(chosen[chosen > 0]):
        window = windows[int(k) - 1]
        if window is None:
            continue
        mine = chosen == k
        r0, c0 = int(rr[mine].min()), int(cc[mine].min())
        r1, c1 = int(rr[mine].max()) + 1, int(cc[mine].max()) + 1
        # the extent's window and the given pixels' box, with a one-pixel ring, in the clump's frame
        (wr0, wc0, wr1, wc1), extent = window
        er0, ec0 = wr0 - origin[0], wc0 - origin[1]
        f0, f1 = min(r0, er0) - 1, min(c0, ec0) - 1
        f2, f3 = max(r1, er0 + extent.shape[0]) + 1, max(c1, ec0 + extent.shape[1]) + 1
        given = np.zeros((f2 - f0, f3 - f1), bool)
        given[rr[mine] - f0, cc[mine] - f1] = True
        own = np.zeros_like(given)
        own[er0 - f0:er0 - f0 + extent.shape[0], ec0 - f1:ec0 - f1 + extent.shape[1]] = extent
        parts, _ = ndi.label(given, structure=eight)
        touching = np.unique(parts[ndi.binary_dilation(own, eight) & given])
        kept = np.isin(parts, touching[touching > 0])
        if kept.any():
            yield int(k), (origin[0] + f0, origin[1] + f1, kept)


def _upsampled_pieces(pieces: list, working_shape, scale: float, shape, full_p_cell: _Upsampled):
    """(row, col, full-resolution bool mask) of working-scale pieces [(row, col, bool mask)] (rows
    and columns may start before 0 or end past the map: cut), cut to p(cell); None when empty."""
    sh, sw = working_shape
    wr0 = max(0, min(r for r, _, _ in pieces))
    wc0 = max(0, min(c for _, c, _ in pieces))
    wr1 = min(sh, max(r + m.shape[0] for r, _, m in pieces))
    wc1 = min(sw, max(c + m.shape[1] for _, c, m in pieces))
    if wr1 <= wr0 or wc1 <= wc0:
        return None
    missed = np.zeros((wr1 - wr0, wc1 - wc0), bool)
    for r, c, m in pieces:
        a0, b0 = max(r, wr0), max(c, wc0)
        a1, b1 = min(r + m.shape[0], wr1), min(c + m.shape[1], wc1)
        if a1 > a0 and b1 > b0:
            missed[a0 - wr0:a1 - wr0, b0 - wc0:b1 - wc0] |= m[a0 - r:a1 - r, b0 - c:b1 - c]
    if not missed.any():
        return None
    rr, cc = np.nonzero(missed)
    wr0, wc0 = wr0 + int(rr.min()), wc0 + int(cc.min())
    missed = missed[rr.min():rr.max() + 1, cc.min():cc.max() + 1]
    b0, b1 = int(wr0 / scale), int(wc0 / scale)
    b2 = min(shape[0], int(math.ceil((wr0 + missed.shape[0]) / scale)))
    b3 = min(shape[1], int(math.ceil((wc0 + missed.shape[1]) / scale)))
    mask = _upsample_mask(missed, (wr0, wc0), (sh, sw), scale, (b0, b1, b2, b3))
    mask &= full_p_cell.box(b0, b1, b2, b3) >= 0.5
    return (b0, b1, mask) if mask.any() else None


def _upsample_mask(mask: np.ndarray, origin, working_shape, scale: float, box) -> np.ndarray:
    """Full-resolution ``box`` of a working-scale bool ``mask`` placed at ``origin`` (working px)
    of a map of ``working_shape``; as :func:`_upsample_labels` reads it, False outside ``mask``."""
    rows, cols = _working_indices(scale, box, working_shape)
    rows, cols = rows - origin[0], cols - origin[1]
    inside_r = (rows >= 0) & (rows < mask.shape[0])
    inside_c = (cols >= 0) & (cols < mask.shape[1])
    out = np.zeros((rows.size, cols.size), bool)
    out[np.ix_(inside_r, inside_c)] = mask[np.ix_(rows[inside_r], cols[inside_c])]
    return out


def extent_iou(a: FoundCell, b: FoundCell) -> float:
    """IoU of two found cells' extents (0 when their boxes do not meet)."""
    r0, c0 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    r1, c1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if r1 <= r0 or c1 <= c0:
        return 0.0
    inter = (a.extent[r0 - a.box[0]:r1 - a.box[0], c0 - a.box[1]:c1 - a.box[1]]
             & b.extent[r0 - b.box[0]:r1 - b.box[0], c0 - b.box[1]:c1 - b.box[1]]).sum()
    return float(inter / max(1, a.extent.sum() + b.extent.sum() - inter))


def suppress_duplicates(found: list[FoundCell], max_iou: float) -> list[FoundCell]:
    """Non-maximum suppression (as StarDist does for its polygons): the surest first, and a cell
    whose extent overlaps a kept one by more than ``max_iou`` is dropped."""
    if max_iou >= 1.0:
        return found
    kept: list[FoundCell] = []
    for cell in sorted(found, key=lambda c: -c.score):
        if all(extent_iou(cell, other) <= max_iou for other in kept):
            kept.append(cell)
    return sorted(kept, key=lambda c: (c.box[0], c.box[1]))


def _solidity(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.convexHull(np.concatenate(contours))
    return float(mask.sum() / max(1.0, cv2.contourArea(hull) + 0.5 * cv2.arcLength(hull, True)))


class _Upsampled:
    """A working-scale map read at full resolution, one box at a time (never the whole image)."""

    def __init__(self, small: np.ndarray, scale: float, shape):
        self.small, self.scale, self.shape = small, scale, shape

    def box(self, r0, c0, r1, c1) -> np.ndarray:
        rows = (np.arange(r0, r1) + 0.5) * self.scale - 0.5
        cols = (np.arange(c0, c1) + 0.5) * self.scale - 0.5
        rows = np.clip(rows, 0, self.small.shape[0] - 1)
        cols = np.clip(cols, 0, self.small.shape[1] - 1)
        return ndi.map_coordinates(self.small, np.meshgrid(rows, cols, indexing="ij"), order=1, mode="nearest")


def _working_indices(scale: float, box, working_shape) -> tuple[np.ndarray, np.ndarray]:
    """The working-scale row and column (nearest) of each full-resolution row and column of ``box``."""
    r0, c0, r1, c1 = box
    rows = np.clip(((np.arange(r0, r1) + 0.5) * scale).astype(int), 0, working_shape[0] - 1)
    cols = np.clip(((np.arange(c0, c1) + 0.5) * scale).astype(int), 0, working_shape[1] - 1)
    return rows, cols


def _upsample_labels(labels: np.ndarray, scale: float, box) -> np.ndarray:
    rows, cols = _working_indices(scale, box, labels.shape)
    return labels[np.ix_(rows, cols)]


def save_finder(finder: CellFinder, path) -> Path:
    """Weights as ``.safetensors`` and the card beside them (written atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in finder.net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"architecture": ARCHITECTURE})
    tmp.replace(path)
    card = path.with_suffix(".json")
    tmp_card = card.with_name(card.name + ".tmp")
    tmp_card.write_text(json.dumps(finder.card, indent=2, default=float))
    tmp_card.replace(card)
    return path


def bundled_finders() -> dict[str, Path]:
    return {p.stem: p for p in sorted(FINDER_DIR.glob("*.safetensors"))}


def _checked_card(path: Path) -> dict:
    card_path = path.with_suffix(".json")
    if not card_path.exists():
        raise FinderError(f"{path}: its card {card_path.name} is missing (it gives the architecture and widths)")
    try:
        card = json.loads(card_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FinderError(f"{card_path}: not a JSON card ({exc})") from exc
    if not isinstance(card, dict):
        raise FinderError(f"{card_path}: a card is a JSON object, not a {type(card).__name__}")
    if card.get("architecture") != ARCHITECTURE:
        raise FinderError(f"{card_path}: architecture {card.get('architecture')!r} is not {ARCHITECTURE!r}")
    check_widths(card.get("widths", [12, 24, 48, 96, 128]), card_path, FinderError)
    rays = card.get("n_rays", 32)
    if not isinstance(rays, int) or not 4 <= rays <= 128:
        raise FinderError(f"{card_path}: n_rays must be an integer in 4..128, got {rays!r}")
    return card


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> CellFinder:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    card = _checked_card(p)
    try:
        state = load_file(str(p))
    except (SafetensorError, OSError) as exc:
        raise FinderError(f"{p}: not a readable safetensors file ({exc})") from exc
    net = FinderNet(card.get("widths", (12, 24, 48, 96, 128)), card.get("n_rays", 32))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise FinderError(f"{p}: weights do not fit the card's network ({str(exc)[:200]})") from exc
    return CellFinder(net, card, str(p))


def load_finder(name_or_path="default") -> CellFinder:
    """The bundled finder by name (``"default"``), or one made by ``cervseg train-finder``."""
    if isinstance(name_or_path, CellFinder):
        return name_or_path
    bundled = bundled_finders()
    path = bundled.get(str(name_or_path)) or Path(name_or_path)
    if not path.exists():
        raise FinderError(f"finder {name_or_path!r} not found; bundled: {sorted(bundled) or 'none'},"
                          " or give a .safetensors path made by `cervseg train-finder`")
    return _load_cached(str(path.resolve()), path.stat().st_mtime)
