"""Fitting the weakly supervised second stage: pseudo-labels from the XAI pipeline (no ground-truth
mask is read) and the U-Net trained on them (:mod:`napari_cervseg.segment.student`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..io.images import to_rgb_uint8
from ..segment.pipeline import segment_cell
from ..segment.student import ARCHITECTURE, CellSegmenter, SmallUNet, _to_input
from ..stages import report_count


@dataclass
class SelfTrainConfig:
    input_size: int = 128
    widths: tuple = (16, 32, 64, 128)
    epochs: int = 40
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    teacher: dict = field(default_factory=lambda: {"method": "gradcam++"})
    #: pixels within this distance (at input size) of a pseudo-label boundary are left out of the
    #: loss: the teacher is least sure there (0 = every pixel counts)
    ignore_band: int = 0
    #: train for this many optimiser steps instead of ``epochs`` (0: epochs); a few examples need
    #: steps, not epochs
    steps: int = 0
    #: scale jitter: each example is zoomed by a random factor in [1 - j, 1 + j] and shifted (0: none)
    scale_jitter: float = 0.0
    #: train on random square crops of this side (px at input size; 0: the whole input): a fully
    #: convolutional net learns the same from a quarter of the pixels, at a quarter of the cost
    crop: int = 0
    #: keep the BatchNorm statistics of the starting weights (fine-tuning on a few cells)
    freeze_bn: bool = False
    #: weight the loss by the square root of inverse class frequency (False: every pixel alike)
    balance_classes: bool = True


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, scale_jitter: float = 0.0, crop: int = 0):
    """Flips, 90-degree turns and a brightness / contrast jitter, the same geometry for image and
    labels; optionally a random zoom + shift (``scale_jitter``) and a random square crop (``crop`` px)."""
    if scale_jitter > 0:
        x, y = _zoom_shift(x, y, gen, scale_jitter)
    if crop and crop < x.shape[-1]:
        r, c = (int(torch.randint(x.shape[d] - crop + 1, (1,), generator=gen)) for d in (-2, -1))
        x, y = x[..., r:r + crop, c:c + crop], y[..., r:r + crop, c:c + crop]
    if torch.rand(1, generator=gen) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    k = int(torch.randint(4, (1,), generator=gen))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    gain = 1 + (torch.rand(1, generator=gen) - 0.5) * 0.3
    bias = (torch.rand(1, generator=gen) - 0.5) * 0.2
    return (x * gain + bias).clamp(-1, 1), y


def _zoom_shift(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, jitter: float):
    """Zoom (factor in [1 - jitter, 1 + jitter]) and shift (up to jitter / 2 of the side) one example;
    the image is resampled bilinearly (border pixels repeated), the labels by nearest neighbour
    (background outside)."""
    zoom = 1 + (float(torch.rand(1, generator=gen)) * 2 - 1) * jitter
    shift = ((torch.rand(2, generator=gen) * 2 - 1) * jitter / 2).tolist()
    theta = torch.tensor([[[1 / zoom, 0.0, shift[0]], [0.0, 1 / zoom, shift[1]]]])
    grid = F.affine_grid(theta, [1, 1, *x.shape[-2:]], align_corners=False)
    x = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    y = F.grid_sample(y[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x, y[0, 0].long()


class TrainingCancelled(Exception):
    """Raised by :func:`train_segmenter` when ``should_stop()`` said so; nothing is written."""


IGNORE = -100


def ignore_boundaries(labels: torch.Tensor, band: int) -> torch.Tensor:
    """``labels`` (N, H, W) with every pixel within ``band`` px of a class boundary set to IGNORE."""
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    out = labels.clone()
    for i, lab in enumerate(labels.numpy().astype(np.uint8)):
        edge = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        out[i][torch.from_numpy(cv2.dilate(edge.astype(np.uint8), kernel) > 0)] = IGNORE
    return out


def pseudo_labels(images, model="default", teacher: dict | None = None, progress=None) -> list[np.ndarray | None]:
    """The teacher pipeline's labels for each image (None where it found no cell or no nucleus)."""
    teacher = dict(teacher or {"method": "gradcam++"})
    method = teacher.pop("method", "gradcam++")
    out = []
    for i, image in enumerate(images):
        result = segment_cell(image, model=model, method=method, **teacher)
        ok = result.cell_found and (result.labels == 2).any() and (result.labels == 1).any()
        out.append(result.labels if ok else None)
        report_count(progress, i + 1, len(images), "cells pseudo-labelled")
    return out


def train_segmenter(images: list[np.ndarray], labels: list[np.ndarray], config: SelfTrainConfig | None = None,
                    val_images=None, val_labels=None, log=print, card_extra: dict | None = None,
                    init: CellSegmenter | None = None, progress=None, should_stop=None) -> CellSegmenter:
    """Fit a SmallUNet to (image, pseudo-label) pairs; the epoch with the lowest validation loss
    against the *pseudo*-labels of the validation images is kept (no ground truth involved).

    ``init``: start from this segmenter's weights (fine-tuning; its input size and widths are
    used); ``progress(stage, fraction)`` is told after every epoch (every step with
    ``config.steps``); ``should_stop()`` returning True stops with :class:`TrainingCancelled`.
    """
    config = config or SelfTrainConfig()
    if init is not None:
        from dataclasses import replace

        config = replace(config, input_size=init.input_size, widths=tuple(init.card.get("widths", config.widths)))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    size = config.input_size

    def tensors(ims, labs):
        xs = torch.stack([_to_input(to_rgb_uint8(im)[0], size) for im in ims])
        ys = torch.stack([torch.from_numpy(cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)).long()
                          for lab in labs])
        return xs, ys

    x, y = tensors(images, labels)
    xv, yv = tensors(val_images, val_labels) if val_images else (None, None)
    counts = torch.bincount(y[y >= 0].flatten(), minlength=3).float()  # pseudo-labels may hold IGNORE
    if config.ignore_band > 0:
        y = ignore_boundaries(y, config.ignore_band)
    class_weights = (counts.sum() / (3 * counts.clamp_min(1))).sqrt()  # soften the background's majority
    if not config.balance_classes:
        class_weights = torch.ones(3)
    net = SmallUNet(config.widths)
    if init is not None:
        net.load_state_dict({k: v.detach().clone() for k, v in init.net.state_dict().items()})
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = int(np.ceil(len(x) / config.batch_size))
    epochs = int(np.ceil(config.steps / per_epoch)) if config.steps else config.epochs
    steps = config.steps or config.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    best, best_state, history = float("inf"), None, []
    t0 = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        net.train()
        if config.freeze_bn:
            for module in net.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        seen = 0
        for start in range(0, len(x), config.batch_size):
            if done >= steps:
                break
            if should_stop is not None and should_stop():
                raise TrainingCancelled("training cancelled; nothing was written")
            idx = order[start:start + config.batch_size]
            pairs = [_augment(x[i], y[i], gen, config.scale_jitter, config.crop) for i in idx]
            xb = torch.stack([p[0] for p in pairs])
            yb = torch.stack([p[1] for p in pairs])
            loss = F.cross_entropy(net(xb), yb, weight=class_weights, ignore_index=IGNORE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            done += 1
            if progress is not None and config.steps:
                progress(f"training: step {done} of {steps}", done / steps)
        entry = {"epoch": epoch + 1, "train_loss": total / max(seen, 1)}
        if xv is not None:
            net.eval()
            with torch.no_grad():
                entry["val_loss"] = float(F.cross_entropy(net(xv), yv, weight=class_weights, ignore_index=IGNORE))
            if entry["val_loss"] < best:
                best, best_state = entry["val_loss"], {k: v.clone() for k, v in net.state_dict().items()}
        history.append(entry)
        if progress is not None and not config.steps:
            progress(f"training: epoch {epoch + 1} of {epochs}", (epoch + 1) / epochs)
        log(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
    if best_state is not None:
        net.load_state_dict(best_state)
    card = {"architecture": ARCHITECTURE, "input_size": size, "widths": list(config.widths),
            "classes": ["background", "cytoplasm", "nucleus"], "config": asdict(config),
            "history": history, "train_seconds": round(time.perf_counter() - t0, 1),
            "supervision": "pseudo-labels of the teacher pipeline on image-level-labelled images;"
                           " no ground-truth mask was used for training or model selection",
            **(card_extra or {})}
    return CellSegmenter(net.eval(), card)
