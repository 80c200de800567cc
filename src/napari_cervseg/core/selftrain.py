"""A weakly supervised second stage: a small U-Net trained on the pipeline's own pseudo-masks.

No ground-truth mask is used: the teacher is the XAI pipeline (Algorithm 1 by default) run on the
training split's images, which carry only image-level labels. A network fitted to many noisy
pseudo-masks averages out errors that differ from cell to cell (a GrabCut leak here, a missed
nucleus there) and learns what they share; whether that beats the teacher is measured, not
assumed (``cervseg evaluate --methods self-trained``).

At run time the ``self-trained`` method still classifies and explains the cell (the heatmap and
class are shown as for every method); the labels come from the U-Net.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .imageio import to_rgb_uint8

SEGMENTER_DIR = Path(__file__).resolve().parent.parent / "weights" / "segmenters"
ARCHITECTURE = "small-unet"


class SegmenterError(ValueError):
    pass


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallUNet(nn.Module):
    """U-Net (Ronneberger et al. 2015), four levels, 3 output classes (background, cytoplasm, nucleus)."""

    def __init__(self, widths=(16, 32, 64, 128), n_classes: int = 3):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=False):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def _to_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).float() / 127.5 - 1.0
    return x


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


class CellSegmenter:
    """A trained U-Net with its card; ``predict(rgb)`` -> labels at the image's size."""

    def __init__(self, net: SmallUNet, card: dict, source: str = "<in memory>"):
        self.net = net.eval()
        self.card = card
        self.source = source
        self.input_size = int(card.get("input_size", 128))
        self.lock = __import__("threading").RLock()

    @torch.no_grad()
    def probabilities(self, image) -> np.ndarray:
        """Class probabilities (H, W, 3) at the image's size; flips averaged (test-time augmentation)."""
        rgb, _ = to_rgb_uint8(image)
        x = _to_input(rgb, self.input_size)[None]
        device = next(self.net.parameters()).device
        x = x.to(device)
        with self.lock:
            logits = self.net(x) + self.net(x.flip(-1)).flip(-1) + self.net(x.flip(-2)).flip(-2)
        probs = torch.softmax(logits / 3, 1)[0].permute(1, 2, 0).cpu().numpy()
        return cv2.resize(probs, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)

    def predict(self, image) -> np.ndarray:
        """Labels (uint8, 0 background, 1 cytoplasm, 2 nucleus), cleaned like the pipeline's."""
        from .refine import combine

        labels = self.probabilities(image).argmax(-1).astype(np.uint8)
        return combine(labels == 2, labels >= 1)


def save_segmenter(seg: CellSegmenter, path) -> Path:
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in seg.net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"architecture": ARCHITECTURE})
    tmp.chmod(0o644)
    tmp.replace(path)
    card = path.with_suffix(".json")
    card.with_name(card.name + ".tmp").write_text(json.dumps(seg.card, indent=2, default=float))
    card.with_name(card.name + ".tmp").replace(card)
    return path


def bundled_segmenters() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SEGMENTER_DIR.glob("*.safetensors"))}


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> CellSegmenter:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    card_path = p.with_suffix(".json")
    if not card_path.exists():
        raise SegmenterError(f"{p}: its card {card_path.name} is missing (it says the architecture and input size)")
    card = json.loads(card_path.read_text())
    if card.get("architecture") != ARCHITECTURE:
        raise SegmenterError(f"{p}: card architecture {card.get('architecture')!r} is not a {ARCHITECTURE!r} segmenter")
    try:
        state = load_file(str(p))
    except (SafetensorError, OSError) as exc:
        raise SegmenterError(f"{p}: not a readable safetensors file ({exc})") from exc
    net = SmallUNet(tuple(card.get("widths", (16, 32, 64, 128))))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise SegmenterError(f"{p}: weights do not fit the card's U-Net ({str(exc)[:200]})") from exc
    return CellSegmenter(net, card, str(p))


def load_segmenter(name_or_path="default") -> CellSegmenter:
    """The bundled self-trained segmenter by name (``"default"``) or one from a ``.safetensors`` + card."""
    if isinstance(name_or_path, CellSegmenter):
        return name_or_path
    bundled = bundled_segmenters()
    path = bundled.get(str(name_or_path)) or Path(name_or_path)
    if not path.exists():
        raise SegmenterError(f"segmenter {name_or_path!r} not found; bundled: {sorted(bundled) or 'none'},"
                             " or give a .safetensors path made by `cervseg self-train`")
    return _load_cached(str(path.resolve()), path.stat().st_mtime)


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
    from .pipeline import segment_cell

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
    counts = torch.bincount(y.flatten(), minlength=3).float()
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
                entry["val_loss"] = float(F.cross_entropy(net(xv), yv, weight=class_weights))
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
