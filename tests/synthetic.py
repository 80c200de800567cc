"""Synthetic Pap-smear-like cells with known masks, for tests, examples and benchmarks.

An elliptical nucleus inside an elliptical cytoplasm, stain colours, blur and noise. "abnormal"
cells have a larger, darker nucleus (a high N/C ratio, the cue cytologists use), "normal" ones a
small nucleus, so a classifier trained on them has a real, localised cue to explain.
"""

from __future__ import annotations

import cv2
import numpy as np


def ellipse_mask(shape, centre, axes, angle_deg) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))),
                (max(1, int(round(axes[0]))), max(1, int(round(axes[1])))), angle_deg, 0, 360, 1, -1)
    return mask.astype(bool)


def synthetic_cell(size=(120, 130), abnormal: bool | None = None, seed: int | None = None,
                   noise: float = 6.0) -> tuple[np.ndarray, np.ndarray, str]:
    """Return (rgb uint8, labels uint8 0/1/2, class name) for one synthetic cell."""
    rng = np.random.default_rng(seed)
    if abnormal is None:
        abnormal = bool(rng.random() < 0.5)
    h, w = size
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.08, 0.08, 2) * (w, h)
    cyto_axes = np.array([rng.uniform(0.30, 0.42) * w, rng.uniform(0.28, 0.40) * h])
    angle = rng.uniform(0, 180)
    frac = rng.uniform(0.45, 0.6) if abnormal else rng.uniform(0.18, 0.28)
    nuc_axes = cyto_axes.min() * frac * np.array([1.0, rng.uniform(0.75, 1.0)])
    nuc_centre = centre + rng.uniform(-0.15, 0.15, 2) * cyto_axes
    cyto = ellipse_mask((h, w), centre, cyto_axes, angle)
    nuc = ellipse_mask((h, w), nuc_centre, nuc_axes, rng.uniform(0, 180)) & cyto
    labels = np.zeros((h, w), np.uint8)
    labels[cyto] = 1
    labels[nuc] = 2
    bg_col = np.array([222, 218, 228]) + rng.uniform(-8, 8, 3)
    cyto_col = np.array([150, 185, 200]) + rng.uniform(-15, 15, 3)
    nuc_col = (np.array([60, 40, 110]) if abnormal else np.array([95, 75, 140])) + rng.uniform(-10, 10, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = bg_col
    img[cyto] = cyto_col
    img[nuc] = nuc_col
    # chromatin texture inside the nucleus, then optics: blur and sensor noise
    img[nuc] += rng.normal(0, 10, (int(nuc.sum()), 1))
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels, "abnormal" if abnormal else "normal"


def synthetic_set(n: int, seed: int = 0, size_range=(70, 160)):
    """n synthetic cells of varied sizes, alternating classes: list of (rgb, labels, class)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = tuple(int(s) for s in rng.integers(size_range[0], size_range[1], 2))
        out.append(synthetic_cell(size, abnormal=bool(i % 2), seed=int(rng.integers(1 << 31)), noise=6.0))
    return out


def coarse_heatmap(truth: np.ndarray, factor: int = 8, seed: int = 0) -> np.ndarray:
    """What a deep CAM looks like: the truth's relevance (0.05 / 0.45 / 1.0 for background /
    cytoplasm / nucleus) seen at 1/factor resolution, upsampled, blurred and noisy."""
    rng = np.random.default_rng(seed)
    heat = np.choose(truth, [0.05, 0.45, 1.0]).astype(np.float32)
    h, w = truth.shape
    small = cv2.resize(heat, (max(2, w // factor), max(2, h // factor)), interpolation=cv2.INTER_AREA)
    heat = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.GaussianBlur(heat, (0, 0), 2) + rng.normal(0, 0.03, heat.shape).astype(np.float32)
    return np.clip(heat, 0, 1)


def train_synthetic_classifier(n_cells: int = 160, epochs: int = 12, seed: int = 0, threads: int = 1,
                               data_seed: int = 11):
    """A small CompactCNN trained for a few seconds on synthetic cells (large nucleus = abnormal).

    Returns a wrapped classifier (64 px input, CAM layer ``features.block3``) whose card records
    its training accuracy. Used by the tests and by ``benchmarks/bench_synthetic.py``.

    Deterministic on one machine: the cells come from ``data_seed``, the weights' initialisation
    and the batch order from ``seed`` (on a private generator; the global torch RNG is left as it
    was), and training runs with ``threads`` intra-op threads and
    ``torch.use_deterministic_algorithms(True)``; thread count and determinism settings are
    restored afterwards. Other CPUs (other SIMD kernels) may still give slightly different weights:
    the tests' bounds come from the spread over seeds and thread counts
    (``benchmarks/bench_test_bounds.py``). BatchNorm's running statistics are recomputed over the
    training set after the last step.
    """
    import torch

    from napari_cervseg.classify import CompactCNN, wrap_model
    from napari_cervseg.classify.preprocess import PreprocessConfig, enhance, normalise, resize

    config = PreprocessConfig(input_size=64)
    cells = synthetic_set(n_cells, seed=data_seed, size_range=(60, 140))
    x = torch.from_numpy(np.stack([normalise(enhance(resize(c[0], 64), config), config) for c in cells]))
    y = torch.tensor([c[2] == "abnormal" for c in cells], dtype=torch.long)
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(max(1, int(threads)))
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = CompactCNN(widths=(8, 16, 32, 32), dropout=0.0)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            net.train()
            for i in range(0, len(x), 32):
                idx = perm[i:i + 32]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
        # BatchNorm's running statistics lag behind weights that changed fast in 60 steps (with
        # them, some seeds scored 0.5 in eval mode while 1.0 in train mode): recompute them once
        # over the whole training set with the final weights
        with torch.no_grad():
            norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: one pass over the set gives its statistics
            net.train()
            net(x)
            for m in norms:
                m.momentum = 0.1
        net.eval()
        with torch.no_grad():
            acc = float((net(x).argmax(1) == y).float().mean())
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
    model = wrap_model(net, preprocess=config, cam_layer="features.block3")
    model.card = {"architecture": "compact", "arch_kwargs": {"widths": [8, 16, 32, 32], "dropout": 0.0},
                  "train_accuracy": acc, "synthetic_training": {"seed": seed, "threads": threads, "data_seed": data_seed,
                                                      "n_cells": n_cells, "epochs": epochs}}
    return model


def synthetic_field(shape=(400, 520), centres=((100, 110), (110, 380), (300, 140), (290, 320), (300, 405)),
                    size=(120, 130), seed: int = 5, noise: float = 4.0, grain: float = 0.0):
    """A field of view of synthetic cells on a slide: (rgb uint8, list of per-cell labels 0/1/2 in
    field coordinates, classes). Cells alternate abnormal / normal; later cells lie on top where
    they overlap (as the truth's pages do, each cell keeps its full mask). ``grain`` > 0 gives the
    cells a real cell's faint chromatin and cytoplasm texture (a smooth multiplicative ripple of
    about that relative amplitude) instead of flat colour."""
    rng = np.random.default_rng(seed)
    h, w = shape
    field = np.empty((h, w, 3), np.float32)
    field[:] = np.array([222, 218, 228], np.float32)
    pages, classes = [], []
    for i, (cy, cx) in enumerate(centres):
        rgb, labels, cls = synthetic_cell(size, abnormal=bool(i % 2 == 0), seed=int(rng.integers(1 << 31)), noise=0.0)
        y0, x0 = int(cy - size[0] // 2), int(cx - size[1] // 2)
        page = np.zeros((h, w), np.uint8)
        ys, xs = slice(max(0, y0), min(h, y0 + size[0])), slice(max(0, x0), min(w, x0 + size[1]))
        sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        page[ys, xs] = labels[sub]
        inside = labels[sub] > 0
        field[ys, xs][inside] = rgb[sub][inside]
        pages.append(page)
        classes.append(cls)
    if grain > 0:
        ripple = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
        ripple *= grain / max(1e-6, float(ripple.std()))
        inside_any = np.any(pages, axis=0)[..., None] if pages else np.zeros((h, w, 1), bool)
        field = np.where(inside_any, field * (1 + ripple[..., None]), field)
    field += rng.normal(0, noise, field.shape)
    return np.clip(field, 0, 255).astype(np.uint8), pages, classes


#: the six cells of the finder tests: two overlap, one is cut by the top border
FINDER_TEST_CENTRES = ((40, 110), (150, 380), (300, 140), (290, 320), (300, 400), (150, 200))


def field_with_debris(seed: int, grain: float = 0.0):
    """The finder tests' field: ``synthetic_field`` of FINDER_TEST_CENTRES with six dark specks of
    debris right of the cells (x > 450). Returns (rgb, pages)."""
    rgb, pages, _ = synthetic_field(shape=(400, 520), centres=FINDER_TEST_CENTRES, seed=seed, grain=grain)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        y, x = int(rng.integers(10, 390)), int(rng.integers(450, 510))
        cv2.circle(rgb, (x, y), int(rng.integers(2, 5)), (60, 50, 70), -1)
    return rgb, pages


def nuclei_found_per_cell(found, pages) -> list[int]:
    """For each true cell (page), how many found cells have their centre in its nucleus."""
    centres = [(int(c.centre[0]), int(c.centre[1])) for c in found if c.nucleus.any()]
    return [int(sum(page[r, c] == 2 for r, c in centres)) for page in pages]


def write_class_folders(root, cells):
    """Write synthetic ``(rgb, mask, class)`` cells as ``root/<class>/c<i>.png`` (the normal/ + abnormal/
    layout that training and ensembles read); returns ``root``."""
    from pathlib import Path

    root = Path(root)
    for i, (rgb, _, cls) in enumerate(cells):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"c{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return root


def synthetic_slide(path, shape=(1024, 1024), centres=None, size=(110, 120), seed: int = 3, tile: int = 256):
    """A small pyramidal OME-TIFF slide of synthetic cells on the slide colour (tests of the slide
    route): returns (path, centres). Cells are spread so that none overlaps another."""
    from napari_cervseg.io.slides import write_pyramid

    h, w = shape
    if centres is None:
        centres = [(y, x) for y in range(90, h - 60, 170) for x in range(90, w - 60, 170)]
    field, _, _ = synthetic_field(shape=shape, centres=centres, size=size, seed=seed)
    write_pyramid(path, lambda y0, x0, y1, x1: field[y0:y1, x0:x1], shape, tile=tile, n_levels=3, mpp=0.25)
    return path, centres
