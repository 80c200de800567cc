"""Training the learned cell finder (:mod:`napari_cervseg.segment.finder`) without any mask.

1. Pseudo-labels: each training-split cell image is segmented by the self-trained segmenter (the
   project's own weak segmentation); its cell (0/1/2 labels) is cut out of its crop.
2. Fields: the cells are composed into fields of view at the finder's working scale as a
   bright-field slide forms them (Beer-Lambert: the field is the slide's colour times the product
   of the transmittances of every cell over a pixel), with what real slides vary: overlap and
   clumps of 2-6 cells, debris, specks, fibres and small dark inflammatory-like blobs (labelled
   background), slide colour, stain strength, grey images, blur, noise, scale, cells cut by the
   field's border. Each cell's full extent and its nucleus are known by construction.
3. The network learns p(nucleus), p(nucleus boundary), p(cell) and, at nucleus pixels, the
   distances to that nucleus's own cell's outline along each ray.

No ground-truth mask is read anywhere here.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from ..segment.finder import (
    ARCHITECTURE,
    RAY_UNIT,
    CellFinder,
    FinderNet,
    field_input,
    rays_at,
    star_distances,
)
from ..stages import report_count


@dataclass
class FinderTrainConfig:
    #: side (working px) of each composed training field
    field_size: int = 256
    n_fields: int = 1200
    widths: tuple = (12, 24, 48, 96, 128)
    n_rays: int = 32
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    #: stop after this many minutes (the issue's budget: one hour on a 2-core CPU) ...
    minutes: float = 40.0
    #: ... or this many optimiser steps, whichever comes first (0: the time alone)
    steps: int = 0
    seed: int = 0
    #: a cell's native pixels become this many working pixels (log-uniform in the range)
    scale_range: tuple = (0.25, 0.9)
    #: share of fields made grey (another laboratory's scanner, the ISBI / EDF images)
    grey_share: float = 0.5  # (0.4 in finder v2)
    #: share of cells whose nucleus is made paler (transmittance ** 0.3-0.7): the pale grey nuclei
    #: of the ISBI / EDF cells, barely darker than overlapping cytoplasm (0 in finder v2)
    pale_nucleus_share: float = 0.3
    #: share of fields with fold lines drawn inside the cells' cytoplasm (0 in finder v2)
    fold_share: float = 0.4
    #: cells cut by their tight Herlev crop get an irregular outline where the crop cut them,
    #: instead of the crop's straight edges (False in finder v2, whose fields held rectangular cells)
    round_cut_cells: bool = True
    #: keep cells whose pseudo-mask runs out of their crop (carved by ``round_cut_cells``): the
    #: large abnormal cells and bare nuclei that fill their tight Herlev crop, otherwise never
    #: seen in training (False: finders v2-v3 left them out)
    keep_cells_running_out: bool = False
    #: share of the composed fields kept aside to watch the loss against pseudo-labels
    val_share: float = 0.05
    #: arithmetic of the training steps: "float32" (the bundled finder's), "bfloat16" (autocast of
    #: the forward pass; the weights, optimiser and loss stay float32) or "auto" (bfloat16 where
    #: the CPU has native bfloat16 instructions, else float32). bfloat16 steps are about 1.6x
    #: faster on an AVX512-BF16 CPU, so a time budget buys more of them; the one finder trained so
    #: (v6, session 19) scored lower on held-out fields than the bundled one: not the default
    precision: str = "float32"


@dataclass
class TrainingCell:
    """One cell for composing: its RGB crop, 0/1/2 labels (one cell, one nucleus) and the crop's
    slide colour."""

    rgb: np.ndarray
    labels: np.ndarray
    background: np.ndarray
    #: the index of the image it was cut from (in the list given to :func:`training_cells`)
    source: int = -1


def background_colour(rgb: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The slide's colour in a cell's crop: the median of the brightest 40 % of its non-cell pixels."""
    out = rgb[~cell].reshape(-1, 3).astype(np.float32)
    if len(out) < 50:
        out = rgb.reshape(-1, 3).astype(np.float32)
    lum = out.mean(1)
    return np.median(out[lum >= np.percentile(lum, 60)], 0)


#: a cell whose pseudo-mask covers more of its crop's border than this share runs out of the crop
#: (Herlev crops are tight, so touching the border is common; covering it is not)
MAX_BORDER_SHARE = 0.9


def one_cell(labels: np.ndarray, keep_running_out: bool = False) -> np.ndarray | None:
    """Labels cut to one cell with one nucleus: the largest nucleus component and the cell piece
    that holds it; None when there is no nucleus or no cytoplasm, or (unless ``keep_running_out``)
    when the cell runs out of its crop."""
    nucleus_parts, n = ndi.label(labels == 2)
    if n == 0:
        return None
    sizes = np.bincount(nucleus_parts.ravel())
    sizes[0] = 0
    nucleus = nucleus_parts == int(np.argmax(sizes))
    cell_parts, _ = ndi.label(labels > 0)
    cell = np.isin(cell_parts, np.unique(cell_parts[nucleus]))
    cell = ndi.binary_fill_holes(cell)
    if (cell & ~nucleus).sum() < nucleus.sum() * 0.2:
        return None
    border = np.concatenate([cell[0], cell[-1], cell[:, 0], cell[:, -1]])
    if border.mean() > MAX_BORDER_SHARE and not keep_running_out:
        return None  # the cell runs out of its crop: its extent is not known
    out = np.zeros(labels.shape, np.uint8)
    out[cell] = 1
    out[nucleus] = 2
    return out


def training_cells(images, segmenter="default", progress=None, keep_running_out: bool = False) -> list[TrainingCell]:
    """Pseudo-labelled cells: the self-trained segmenter's labels of each image, cut to one cell
    (:func:`one_cell`)."""
    from ..io.images import to_rgb_uint8
    from ..segment.student import load_segmenter

    seg = load_segmenter(segmenter)
    cells = []
    for i, image in enumerate(images):
        rgb = to_rgb_uint8(image)[0]
        labels = one_cell(seg.predict(rgb, cell_threshold=seg.cell_threshold), keep_running_out)
        if labels is not None:
            rows, cols = np.nonzero(labels)
            box = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
            cells.append(TrainingCell(rgb[box], labels[box], background_colour(rgb, labels > 0), source=i))
        report_count(progress, i + 1, len(images), "cells pseudo-labelled")
    return cells


def _blob(rng, radius: float) -> np.ndarray:
    """A float32 alpha mask of a few overlapping ellipses (debris, an inflammatory cell)."""
    side = int(2 * radius * 2.2) + 3
    mask = np.zeros((side, side), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        c = side / 2 + rng.normal(0, radius * 0.35, 2)
        axes = np.maximum(1, radius * rng.uniform(0.5, 1.0, 2))
        cv2.ellipse(mask, (int(c[1]), int(c[0])), (int(axes[0]), int(axes[1])), float(rng.uniform(0, 180)),
                    0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 0.7)


def _round_crop_cut(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cell the crop's border cut (its mask runs along the crop's edge) with that edge carved
    into an irregular outline a few pixels inside, so that composed cells are not rectangles; the
    nucleus is never cut."""
    cell = lab > 0
    edge = np.concatenate([cell[0], cell[-1], cell[:, 0], cell[:, -1]])
    if edge.mean() < 0.05 or min(lab.shape) < 12:
        return lab
    inner = np.zeros(lab.shape, np.uint8)
    inner[1:-1, 1:-1] = 1
    depth = ndi.distance_transform_edt(inner)
    noise = cv2.GaussianBlur(rng.normal(0, 1, lab.shape).astype(np.float32), (0, 0), max(lab.shape) / 10)
    noise = (noise - noise.min()) / max(1e-6, float(noise.max() - noise.min()))
    margin = rng.uniform(0.02, 0.08) * min(lab.shape)
    keep = (depth > margin * (0.2 + 1.6 * noise)) | (lab == 2)
    out = np.where(keep, lab, 0).astype(lab.dtype)
    parts, n = ndi.label(out > 0)
    if n > 1:  # one piece: the one holding the nucleus
        out[~np.isin(parts, np.unique(parts[out == 2]))] = 0
    return out


def compose_field(cells: list[TrainingCell], rng: np.random.Generator, config: FinderTrainConfig):
    """One training field: (rgb uint8 (S, S, 3), targets uint8 (3, S, S): nucleus, nucleus
    boundary, cell; rays uint8 (n_rays, S, S) in working px at nucleus pixels; a dict of the
    nucleus and cell diameters, and under ``"placed"`` each placed cell's (index in ``cells``,
    cell mask, nucleus mask))."""
    from skimage.segmentation import find_boundaries

    size = config.field_size
    lo, hi = np.log(config.scale_range[0]), np.log(config.scale_range[1])
    field_scale = float(np.exp(rng.uniform(lo, hi)))
    slide = cells[int(rng.integers(len(cells)))].background * rng.uniform(0.9, 1.05, 3)
    slide = np.clip(slide, 120, 255)
    trans = np.ones((size, size, 3), np.float32)
    strength = rng.uniform(0.6, 1.5)  # stain strength: transmittance ** strength
    top = np.zeros((size, size), np.int32)  # the topmost nucleus at each pixel
    masks = []  # (cell mask, nucleus mask) of each placed cell, full field
    n_cells = int(rng.integers(1, 10))
    clump_centre = rng.uniform(0.2, 0.8, 2) * size if rng.random() < 0.5 else None
    clump_left = int(rng.integers(2, 7)) if clump_centre is not None else 0
    placed = []  # index in cells of each placed cell, in the order of masks
    for _ in range(n_cells + clump_left):
        index = int(rng.integers(len(cells)))
        cell = cells[index]
        s = field_scale * rng.uniform(0.85, 1.15)
        h, w = cell.labels.shape
        nh, nw = max(4, int(round(h * s))), max(4, int(round(w * s)))
        if nh >= size * 1.5 or nw >= size * 1.5:
            continue
        rgb = cv2.resize(cell.rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        lab = cv2.resize(cell.labels, (nw, nh), interpolation=cv2.INTER_NEAREST)
        if not (lab == 2).any():
            continue
        k = int(rng.integers(4))
        rgb, lab = np.rot90(rgb, k), np.rot90(lab, k)
        if rng.random() < 0.5:
            rgb, lab = rgb[:, ::-1], lab[:, ::-1]
        nh, nw = lab.shape
        if config.round_cut_cells:
            lab = _round_crop_cut(lab, rng)
        if clump_left > 0:
            centre = clump_centre + rng.normal(0, 0.35, 2) * max(nh, nw)
            clump_left -= 1
        else:
            centre = rng.uniform(-0.1, 1.1, 2) * size
        y, x = int(centre[0] - nh / 2), int(centre[1] - nw / 2)
        # the part of the cell inside the field
        fy0, fx0, fy1, fx1 = max(0, y), max(0, x), min(size, y + nh), min(size, x + nw)
        if fy1 - fy0 < 4 or fx1 - fx0 < 4:
            continue
        cy0, cx0 = fy0 - y, fx0 - x
        cy1, cx1 = cy0 + fy1 - fy0, cx0 + fx1 - fx0
        part = lab[cy0:cy1, cx0:cx1]
        if not (part == 2).any() or (part == 2).sum() < 0.5 * (lab == 2).sum():
            continue  # the nucleus is (mostly) outside the field: not this field's cell
        t = np.clip(rgb[cy0:cy1, cx0:cx1].astype(np.float32) / np.maximum(cell.background, 1), 0.02, 1.0)
        t = t ** (strength * rng.uniform(0.85, 1.15))
        if config.pale_nucleus_share and rng.random() < config.pale_nucleus_share:
            in_nucleus = part == 2
            t[in_nucleus] = t[in_nucleus] ** rng.uniform(0.3, 0.7)
        alpha = cv2.GaussianBlur((part > 0).astype(np.float32), (0, 0), 0.8)[..., None]
        trans[fy0:fy1, fx0:fx1] *= 1 - alpha * (1 - t)
        cell_mask = np.zeros((size, size), bool)
        cell_mask[fy0:fy1, fx0:fx1] = part > 0
        nucleus = np.zeros((size, size), bool)
        nucleus[fy0:fy1, fx0:fx1] = part == 2
        masks.append((cell_mask, nucleus))
        placed.append(index)
        top[nucleus] = len(masks)
    # debris, specks, fibres and small dark blobs with no cytoplasm (inflammatory-like): background
    covered = np.any([m for m, _ in masks], 0) if masks else np.zeros((size, size), bool)
    diameters = [2 * math.sqrt(n.sum() / math.pi) for _, n in masks]
    cell_diameters = [2 * math.sqrt(m.sum() / math.pi) for m, _ in masks]
    nucleus_d = float(np.median(diameters)) if diameters else 15 * field_scale
    for _ in range(int(rng.integers(0, 9))):
        kind = rng.random()
        if kind < 0.45:
            radius = nucleus_d * rng.uniform(0.2, 0.45)  # inflammatory / bare small dark blob
            dark = rng.uniform(0.25, 0.6)
        elif kind < 0.8:
            radius = rng.uniform(0.7, 3.0)  # speck
            dark = rng.uniform(0.2, 0.7)
        else:
            radius = nucleus_d * rng.uniform(0.4, 1.5)  # pale debris
            dark = rng.uniform(0.7, 0.92)
        blob = _blob(rng, radius)
        bh, bw = blob.shape
        y, x = int(rng.integers(-bh // 2, size - bh // 2)), int(rng.integers(-bw // 2, size - bw // 2))
        fy0, fx0, fy1, fx1 = max(0, y), max(0, x), min(size, y + bh), min(size, x + bw)
        if fy1 <= fy0 or fx1 <= fx0:
            continue
        if kind < 0.45 and covered[fy0:fy1, fx0:fx1].any():
            continue  # a small dark blob *on* a cell is what a small nucleus looks like: only on bare slide
        a = blob[fy0 - y:fy1 - y, fx0 - x:fx1 - x, None]
        tint = np.clip(dark * rng.uniform(0.85, 1.15, 3), 0.05, 1)
        trans[fy0:fy1, fx0:fx1] *= 1 - a * (1 - tint)
    for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.3 else 0):
        p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        line = np.zeros((size, size), np.float32)
        cv2.line(line, (int(p0[1]), int(p0[0])), (int(p1[1]), int(p1[0])), 1.0, int(rng.integers(1, 3)))
        trans *= 1 - cv2.GaussianBlur(line, (0, 0), 0.8)[..., None] * rng.uniform(0.05, 0.3)
    if config.fold_share and rng.random() < config.fold_share and masks:  # folds: thin dark curves in cytoplasm
        folds = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            points = np.cumsum(rng.normal(0, size / 12, (4, 2)), 0) + rng.uniform(0, size, 2)
            cv2.polylines(folds, [np.round(points[:, ::-1]).astype(np.int32)], False, 1.0, int(rng.integers(1, 3)))
        folds = cv2.GaussianBlur(folds, (0, 0), 0.8) * covered
        trans *= 1 - folds[..., None] * rng.uniform(0.05, 0.25)
    if rng.random() < 0.5 and masks:  # cytoplasm texture (folds, granules) of the grey EDF cells
        grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.5))
        grain = 1 + rng.uniform(0.02, 0.08) * grain / max(1e-6, float(grain.std()))
        trans = np.where(covered[..., None], trans * grain[..., None], trans)
    # lamp: a gentle gradient across the field
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    lamp = 1 + rng.uniform(-0.06, 0.06) * (gy - 0.5) + rng.uniform(-0.06, 0.06) * (gx - 0.5)
    field = slide[None, None] * trans * lamp[..., None]
    if rng.random() < config.grey_share:
        field = np.repeat(field @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(field.shape)
    if rng.random() < 0.5:
        field = cv2.GaussianBlur(field, (0, 0), rng.uniform(0.3, 1.3))
    field = field + rng.normal(0, rng.uniform(0.5, 4.0), field.shape)
    rgb = np.clip(field, 0, 255).astype(np.uint8)
    targets = np.zeros((3, size, size), np.uint8)
    targets[0] = top > 0
    targets[1] = find_boundaries(top, mode="inner") & (top > 0)
    targets[2] = np.any([m for m, _ in masks], 0) if masks else 0
    rays = np.zeros((config.n_rays, size, size), np.uint8)
    for k, (cell_mask, _) in enumerate(masks, start=1):
        rr, cc = np.nonzero(top == k)
        if len(rr):
            d = star_distances(cell_mask, np.stack([rr, cc], 1), config.n_rays)
            rays[:, rr, cc] = np.clip(np.rint(d), 0, 255).astype(np.uint8).T
    return rgb, targets, rays, {"nucleus": diameters, "cell": cell_diameters,
                                "placed": [(i, m, n) for i, (m, n) in zip(placed, masks, strict=True)]}


def compose_fields(cells: list[TrainingCell], config: FinderTrainConfig, progress=None):
    """``config.n_fields`` fields: images (N, S, S, 3), targets (N, 3, S, S), rays (N, R, S, S),
    and the median nucleus and cell diameters (working px) over all of them (the sizes the finder
    will expect: ``{"nucleus_diameter": .., "cell_diameter": ..}``)."""
    if not cells:
        raise ValueError("no pseudo-labelled cell to compose fields from (the segmenter found no nucleus in any)")
    rng = np.random.default_rng(config.seed)
    s, n = config.field_size, config.n_fields
    images = np.zeros((n, s, s, 3), np.uint8)
    targets = np.zeros((n, 3, s, s), np.uint8)
    rays = np.zeros((n, config.n_rays, s, s), np.uint8)
    diameters = {"nucleus": [], "cell": []}
    for i in range(n):
        images[i], targets[i], rays[i], d = compose_field(cells, rng, config)
        for key in diameters:
            diameters[key] += d[key]
        report_count(progress, i + 1, n, "fields composed")
    return images, targets, rays, {f"{key}_diameter": float(np.median(v)) if v else None for key, v in diameters.items()}


def _ray_permutation(n_rays: int, op: str) -> np.ndarray:
    """Index map so that rays[perm] are the rays of the flipped / transposed image (each op is
    its own inverse): left-right x -> -x, up-down y -> -y, transpose y <-> x."""
    i = np.arange(n_rays)
    return {"lr": (n_rays // 2 - i) % n_rays, "ud": (-i) % n_rays, "t": (n_rays // 4 - i) % n_rays}[op]


def _augment_batch(x, y, r, gen: torch.Generator):
    """The same random flips / transpose for images, targets and rays (ray indices follow), and a
    gain / offset jitter of the input."""
    n_rays = r.shape[1]
    if torch.rand(1, generator=gen) < 0.5:
        x, y, r = x.flip(-1), y.flip(-1), r.flip(-1)[:, _ray_permutation(n_rays, "lr")]
    if torch.rand(1, generator=gen) < 0.5:
        x, y, r = x.flip(-2), y.flip(-2), r.flip(-2)[:, _ray_permutation(n_rays, "ud")]
    if torch.rand(1, generator=gen) < 0.5:
        x, y, r = x.transpose(-1, -2), y.transpose(-1, -2), r.transpose(-1, -2)[:, _ray_permutation(n_rays, "t")]
    gain = 1 + (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5) * 0.2
    bias = (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5) * 0.15
    return x * gain + bias, y, r


def finder_loss(logits, half_rays, y, r):
    """BCE on the three maps (+ soft Dice on the nucleus), L1 on the rays at nucleus pixels
    (``half_rays``: ``FinderNet.forward_half_rays``'s ray logits, read at those pixels)."""
    y = y.float()
    weights = torch.tensor([1.0, 3.0, 1.0], device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=weights[None, :, None, None])
    p = torch.sigmoid(logits[:, 0])
    dice = 1 - (2 * (p * y[:, 0]).sum() + 1) / (p.sum() + y[:, 0].sum() + 1)
    points = torch.nonzero(y[:, 0] > 0)
    if len(points):
        dist = rays_at(half_rays, points, tuple(y.shape[-2:]))
        target = r[points[:, 0], :, points[:, 1], points[:, 2]].float() / RAY_UNIT
        ray = (dist - target).abs().mean(1).mean()
    else:
        ray = half_rays.sum() * 0
    return bce + dice + ray, {"bce": bce.item(), "dice": dice.item(), "ray": ray.item()}


PRECISIONS = ("auto", "float32", "bfloat16")


def _native_bfloat16() -> bool:
    try:  # a private oneDNN query (torch >= 1.12); where it is missing, take float32
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def training_dtype(precision: str) -> torch.dtype:
    """The dtype the training steps compute in (see ``FinderTrainConfig.precision``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: give one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        # without native instructions bfloat16 is converted in software (not measured here; no such CPU)
        return torch.bfloat16 if _native_bfloat16() else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def _to_tensors(images, targets, rays):
    x = torch.from_numpy(np.stack([field_input(im) for im in images])).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(targets), torch.from_numpy(rays)


def train_finder(images, targets, rays, sizes: dict, config: FinderTrainConfig | None = None,
                 init: CellFinder | None = None, log=print, card_extra: dict | None = None,
                 should_stop=None, freeze_bn: bool = False) -> CellFinder:
    """Fit a FinderNet to composed fields (or to corrected fields, ``init`` given: fine-tuning).

    Trains until ``config.minutes`` or ``config.steps``; the weights with the lowest loss on the
    held-aside fields (against their pseudo-labels) are kept."""
    config = config or FinderTrainConfig()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n = len(images)
    n_val = max(1, int(round(config.val_share * n))) if n >= 10 else 0
    order = np.random.default_rng(config.seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    if init is not None:
        net = FinderNet(init.net.widths, init.net.n_rays)
        net.load_state_dict(init.net.state_dict())
    else:
        net = FinderNet(config.widths, config.n_rays)
    # channels-last convolutions are about 1.25x faster on CPU (oneDNN); the saved weights are the same
    net = net.to(memory_format=torch.channels_last)
    dtype = training_dtype(config.precision)

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits, half_rays = net.forward_half_rays(x.contiguous(memory_format=torch.channels_last))
        return logits.float(), half_rays.float()

    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    t0 = time.perf_counter()
    budget = config.minutes * 60
    step, history = 0, []
    best, best_state = math.inf, None
    val_x = _to_tensors(images[val], targets[val], rays[val]) if n_val else None

    def lr_at(fraction: float) -> float:
        warm = min(1.0, step / 100)
        return config.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))

    running = []
    while True:
        elapsed = time.perf_counter() - t0
        fraction = max(elapsed / budget if budget > 0 else 0, step / config.steps if config.steps else 0)
        if fraction >= 1 or (should_stop is not None and should_stop()):
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(fraction)
        pick = train[torch.randint(len(train), (config.batch_size,), generator=gen).numpy()]
        x, y, r = _to_tensors(images[pick], targets[pick], rays[pick])
        x, y, r = _augment_batch(x, y, r, gen)
        net.train()
        if freeze_bn:  # a few corrected fields: keep the statistics of the many composed ones
            for module in net.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
        logits, dist = forward(x)
        loss, parts = finder_loss(logits, dist, y, r)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        running.append(loss.item())
        if step % 100 == 0 or fraction >= 0.999:
            entry = {"step": step, "seconds": round(time.perf_counter() - t0, 1), "train_loss": float(np.mean(running))}
            running = []
            if val_x is not None:
                net.eval()
                with torch.no_grad():
                    vl = []
                    for i in range(0, len(val), 8):
                        lg, ds = forward(val_x[0][i:i + 8])
                        vl.append(finder_loss(lg, ds, val_x[1][i:i + 8], val_x[2][i:i + 8])[0].item())
                entry["val_loss"] = float(np.mean(vl))
                if entry["val_loss"] < best:
                    best = entry["val_loss"]
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            history.append(entry)
            log(f"step {step}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in entry.items() if k != "step"))
    if best_state is not None:
        net.load_state_dict(best_state)
    net = net.to(memory_format=torch.contiguous_format)
    net.eval()
    card = {"architecture": ARCHITECTURE, "widths": list(net.widths), "n_rays": net.n_rays,
            **sizes,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            "steps": step, "train_seconds": round(time.perf_counter() - t0, 1), "history": history,
            "step_dtype": str(dtype).removeprefix("torch."),
            "best_val_loss": None if best == math.inf else best,
            "supervision": ("pseudo-labels: fields composed from single cells segmented by the self-trained"
                            " segmenter; no ground-truth mask was read"),
            **(card_extra or {})}
    return CellFinder(net, card)


# ----------------------------------------------------------------------------------------------
# learning from corrections: a user's corrected fields fine-tune the finder


@dataclass
class FinderCorrectionConfig:
    """How the finder is fine-tuned on corrected fields."""

    #: optimiser steps; patches of ``patch`` working px, ``batch_size`` a step
    steps: int = 120
    batch_size: int = 4
    patch: int = 256
    lr: float = 5e-4
    seed: int = 0
    #: patches cut from each corrected field (at random places, where cells are)
    patches_per_field: int = 16


def instance_targets(cells: np.ndarray, nuclei: np.ndarray, n_rays: int):
    """Training targets of instance labels (cell k's nucleus has id k in ``nuclei``): (3, H, W)
    nucleus / boundary / cell and (n_rays, H, W) rays at nucleus pixels to the cell's outline."""
    from skimage.segmentation import find_boundaries

    cells, nuclei = np.asarray(cells, np.int32), np.asarray(nuclei, np.int32)
    nuclei = np.where(cells > 0, nuclei, 0)
    targets = np.zeros((3,) + cells.shape, np.uint8)
    targets[0] = nuclei > 0
    targets[1] = find_boundaries(nuclei, mode="inner") & (nuclei > 0)
    targets[2] = cells > 0
    rays = np.zeros((n_rays,) + cells.shape, np.uint8)
    for k, box in enumerate(ndi.find_objects(nuclei), start=1):
        if box is None:
            continue
        rr, cc = np.nonzero(nuclei == k)
        # the cell's box, with the rays' whole reach
        d = star_distances(cells == k, np.stack([rr, cc], 1), n_rays)
        rays[:, rr, cc] = np.clip(np.rint(d), 0, 255).astype(np.uint8).T
    return targets, rays


def correction_patches(finder: CellFinder, images, cells_list, nuclei_list, config: FinderCorrectionConfig):
    """Working-scale patches (images, targets, rays) of corrected fields, each field at the scale
    the finder chooses for it."""
    rng = np.random.default_rng(config.seed)
    out_images, out_targets, out_rays = [], [], []
    p = config.patch
    for image, cells, nuclei in zip(images, cells_list, nuclei_list, strict=True):
        scale = finder.choose_scale(image)
        h, w = image.shape[:2]
        sh, sw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        small_cells = cv2.resize(np.asarray(cells, np.int32).astype(np.float32), (sw, sh),
                                 interpolation=cv2.INTER_NEAREST).astype(np.int32)
        small_nuclei = cv2.resize(np.asarray(nuclei, np.int32).astype(np.float32), (sw, sh),
                                  interpolation=cv2.INTER_NEAREST).astype(np.int32)
        targets, rays = instance_targets(small_cells, small_nuclei, finder.net.n_rays)
        pad = ((0, max(0, p - sh)), (0, max(0, p - sw)))
        small = np.pad(small, pad + ((0, 0),), mode="edge")
        targets = np.pad(targets, ((0, 0),) + pad)
        rays = np.pad(rays, ((0, 0),) + pad)
        H, W = small.shape[:2]
        where = np.argwhere(targets[2] > 0)
        for _ in range(config.patches_per_field):
            if len(where) and rng.random() < 0.8:
                cy, cx = where[rng.integers(len(where))]
                r0 = int(np.clip(cy - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, H - p))
                c0 = int(np.clip(cx - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, W - p))
            else:
                r0, c0 = int(rng.integers(0, H - p + 1)), int(rng.integers(0, W - p + 1))
            out_images.append(small[r0:r0 + p, c0:c0 + p])
            out_targets.append(targets[:, r0:r0 + p, c0:c0 + p])
            out_rays.append(rays[:, r0:r0 + p, c0:c0 + p])
    return np.stack(out_images), np.stack(out_targets), np.stack(out_rays)


def finetune_finder(finder: CellFinder, images, cells_list, nuclei_list, config: FinderCorrectionConfig | None = None,
                    sources=None, log=None, should_stop=None) -> CellFinder:
    """The finder fine-tuned on fields a user corrected (``cells`` / ``nuclei`` instance labels
    sharing ids, as the field route writes them). The base finder is left as it was."""
    config = config or FinderCorrectionConfig()
    if not len(images):
        raise ValueError("no corrected field to learn from")
    patches = correction_patches(finder, images, cells_list, nuclei_list, config)
    train_config = FinderTrainConfig(steps=config.steps, minutes=1e6, batch_size=config.batch_size, lr=config.lr,
                                     seed=config.seed, val_share=0.0, widths=finder.net.widths,
                                     n_rays=finder.net.n_rays)
    sizes = {k: finder.card.get(k) for k in ("nucleus_diameter", "cell_diameter")}
    tuned = train_finder(*patches, sizes, train_config, init=finder, log=log or (lambda *a: None),
                         should_stop=should_stop, freeze_bn=True)
    tuned.card.update({
        "base_finder": finder.source, "base_card": {k: finder.card.get(k) for k in ("command", "steps", "supervision")},
        "supervision": "fine-tuned on fields whose cells and nuclei a user corrected by hand",
        "corrections": list(sources or [f"field {i + 1}" for i in range(len(images))]),
        "correction_config": asdict(config)})
    return tuned
