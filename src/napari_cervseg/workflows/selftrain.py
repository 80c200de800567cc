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


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
    """Flips, 90-degree turns and a brightness / contrast jitter, the same geometry for image and labels."""
    if torch.rand(1, generator=gen) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    k = int(torch.randint(4, (1,), generator=gen))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    gain = 1 + (torch.rand(1, generator=gen) - 0.5) * 0.3
    bias = (torch.rand(1, generator=gen) - 0.5) * 0.2
    return (x * gain + bias).clamp(-1, 1), y


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
        if progress:
            progress(i + 1, len(images))
    return out


def train_segmenter(images: list[np.ndarray], labels: list[np.ndarray], config: SelfTrainConfig | None = None,
                    val_images=None, val_labels=None, log=print, card_extra: dict | None = None) -> CellSegmenter:
    """Fit a SmallUNet to (image, pseudo-label) pairs; the epoch with the lowest validation loss
    against the *pseudo*-labels of the validation images is kept (no ground truth involved)."""
    config = config or SelfTrainConfig()
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
    net = SmallUNet(config.widths)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    best, best_state, history = float("inf"), None, []
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), config.batch_size):
            idx = order[start:start + config.batch_size]
            pairs = [_augment(x[i], y[i], gen) for i in idx]
            xb = torch.stack([p[0] for p in pairs])
            yb = torch.stack([p[1] for p in pairs])
            loss = F.cross_entropy(net(xb), yb, weight=class_weights, ignore_index=IGNORE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        entry = {"epoch": epoch + 1, "train_loss": total / len(x)}
        if xv is not None:
            net.eval()
            with torch.no_grad():
                entry["val_loss"] = float(F.cross_entropy(net(xv), yv, weight=class_weights, ignore_index=IGNORE))
            if entry["val_loss"] < best:
                best, best_state = entry["val_loss"], {k: v.clone() for k, v in net.state_dict().items()}
        history.append(entry)
        log(f"epoch {epoch + 1}/{config.epochs} " + " ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
    if best_state is not None:
        net.load_state_dict(best_state)
    card = {"architecture": ARCHITECTURE, "input_size": size, "widths": list(config.widths),
            "classes": ["background", "cytoplasm", "nucleus"], "config": asdict(config),
            "history": history, "train_seconds": round(time.perf_counter() - t0, 1),
            "supervision": "pseudo-labels of the teacher pipeline on image-level-labelled images;"
                           " no ground-truth mask was used for training or model selection",
            **(card_extra or {})}
    return CellSegmenter(net.eval(), card)
