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
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io.images import to_rgb_uint8

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


class CellSegmenter:
    """A trained U-Net with its card; ``predict(rgb)`` -> labels at the image's size."""

    def __init__(self, net: SmallUNet, card: dict, source: str = "<in memory>"):
        self.net = net.eval()
        self.card = card
        self.source = source
        self.input_size = int(card.get("input_size", 128))
        #: p(cell) from which a pixel is cell unless a run says otherwise (chosen on a validation
        #: split for the bundled segmenter); None where the card says nothing: the argmax
        threshold = card.get("cell_threshold")
        self.cell_threshold = None if threshold is None else float(threshold)
        self.lock = __import__("threading").RLock()

    @torch.no_grad()
    def probabilities(self, image, tta: str = "flips") -> np.ndarray:
        """Class probabilities (H, W, 3) at the image's size.

        ``tta``: the test-time augmentation whose logits are averaged: ``"none"`` (one pass),
        ``"flips"`` (identity, left-right, up-down) or ``"dihedral"`` (all 8 flips / rotations).
        """
        if tta not in STUDENT_TTA:
            raise SegmenterError(f"unknown tta {tta!r}; choose one of {', '.join(STUDENT_TTA)}")
        rgb, _ = to_rgb_uint8(image)
        x = _to_input(rgb, self.input_size)[None]
        device = next(self.net.parameters()).device
        x = x.to(device)
        views = _TTA_VIEWS[tta]
        with self.lock:
            logits = sum(undo(self.net(do(x))) for do, undo in views)
        probs = torch.softmax(logits / len(views), 1)[0].permute(1, 2, 0).cpu().numpy()
        return cv2.resize(probs, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)

    def predict(self, image, tta: str = "flips", refine: str = "none",
                cell_threshold: float | None = None) -> np.ndarray:
        """Labels (uint8, 0 background, 1 cytoplasm, 2 nucleus), cleaned like the pipeline's.

        ``tta`` as for :meth:`probabilities`; ``refine`` and ``cell_threshold`` as for
        :func:`labels_from_probabilities`.
        """
        rgb, _ = to_rgb_uint8(image)
        return labels_from_probabilities(rgb, self.probabilities(rgb, tta), refine, cell_threshold)


def _flip(dims):
    return lambda t: t.flip(dims)


def _rot(k):
    return lambda t: torch.rot90(t, k, (-2, -1))


def _rot_flip(k):
    # (flip after rotating) is undone by flipping, then rotating back
    return (lambda t: torch.rot90(t, k, (-2, -1)).flip(-1)), (lambda t: torch.rot90(t.flip(-1), -k, (-2, -1)))


def _identity(t):
    return t


_FLIPS = [(_identity, _identity), (_flip(-1), _flip(-1)), (_flip(-2), _flip(-2))]
#: the views each test-time augmentation averages, as (transform, inverse) pairs
_TTA_VIEWS = {
    "none": [(_identity, _identity)],
    "flips": _FLIPS,
    "dihedral": [(_identity, _identity), (_rot(1), _rot(-1)), (_rot(2), _rot(-2)), (_rot(3), _rot(-3)),
                 *(_rot_flip(k) for k in range(4))],
}
#: the student's test-time augmentations: one pass, three flips, or the 8 flips / rotations
STUDENT_TTA = tuple(_TTA_VIEWS)
#: how the student's probabilities become labels: argmax, or a GrabCut of the cell (and nucleus)
#: seeded by the probabilities (sure where the student is confident, probable where it leans)
STUDENT_REFINE = ("none", "grabcut-cell", "grabcut")
#: a probability above 1 - SURE (below SURE) seeds GrabCut's sure foreground (sure background)
SURE = 0.1


def _probability_cut(rgb: np.ndarray, p: np.ndarray, probable: np.ndarray, allowed: np.ndarray | None = None,
                     threshold: float = 0.5) -> np.ndarray:
    from .refine import grabcut, seed_map

    sure_bg = p < min(SURE, threshold / 2)
    if allowed is not None:
        sure_bg |= ~allowed
    seeds = seed_map(p.shape, probable, sure_fg=p > 1 - SURE, sure_bg=sure_bg)
    return grabcut(rgb, seeds, iterations=5)


def labels_from_probabilities(rgb: np.ndarray, probs: np.ndarray, refine: str = "none",
                              cell_threshold: float | None = None) -> np.ndarray:
    """Labels from the student's probabilities (H, W, 3: background, cytoplasm, nucleus).

    Parameters
    ----------
    rgb : ndarray
        The (H, W, 3) uint8 cell image the probabilities belong to.
    probs : ndarray
        (H, W, 3) class probabilities.
    refine : {"none", "grabcut-cell", "grabcut"}
        ``"none"``: the cell is where p(cell) = p(cytoplasm) + p(nucleus) >= ``cell_threshold``
        (None: where background is not the most probable class) and the nucleus where nucleus is
        the most probable class; ``"grabcut-cell"``: the cell is cut by GrabCut seeded from
        p(cell) (sure above 0.9, probable where the plain rule says cell, sure background below
        min(0.1, cell_threshold / 2)); ``"grabcut"``: the nucleus is also cut that way from
        p(nucleus) (probable where it is the most probable class), inside the cell.
    cell_threshold : float or None
        p(cell) from which a pixel is (probably) cell; None: the argmax of the three classes.

    Returns
    -------
    ndarray
        (H, W) uint8: 0 background, 1 cytoplasm, 2 nucleus, cleaned by :func:`.refine.combine`.

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.zeros((8, 8, 3), np.float32); probs[..., 0] = 1; probs[2:6, 2:6] = (0, 0.2, 0.8)
    >>> labels_from_probabilities(np.zeros((8, 8, 3), np.uint8), probs)[4]
    array([0, 0, 2, 2, 2, 2, 0, 0], dtype=uint8)
    """
    from .refine import combine

    if refine not in STUDENT_REFINE:
        raise SegmenterError(f"unknown refine {refine!r}; choose one of {', '.join(STUDENT_REFINE)}")
    p_cell = probs[..., 1] + probs[..., 2]
    winner = probs.argmax(-1)
    nucleus = winner == 2
    cell = winner >= 1 if cell_threshold is None else p_cell >= cell_threshold
    if refine != "none":
        cell = _probability_cut(rgb, p_cell, cell, threshold=0.5 if cell_threshold is None else cell_threshold)
        cell |= nucleus
    if refine == "grabcut":
        nucleus = _probability_cut(rgb, probs[..., 2], nucleus, allowed=cell)
    return combine(nucleus, cell)


def check_widths(widths, card_path, error: type[Exception]) -> None:
    """A U-Net card's ``widths``: 2-6 integers in 1..512 (a wrong one would fail deep in torch, or
    ask for terabytes), else ``error`` naming the card."""
    if (not isinstance(widths, list) or not 2 <= len(widths) <= 6
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 512 for v in widths)):
        raise error(f"{card_path}: widths must be 2-6 integers in 1..512 (the U-Net's channels), got"
                    f" {str(widths)[:80]}")


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
    try:
        card = json.loads(card_path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise SegmenterError(f"{card_path}: not a readable JSON card ({exc})") from exc
    if not isinstance(card, dict):
        raise SegmenterError(f"{card_path}: a segmenter card is a JSON object, not a {type(card).__name__}")
    if card.get("architecture") != ARCHITECTURE:
        raise SegmenterError(f"{card_path}: architecture {card.get('architecture')!r} is not a {ARCHITECTURE!r}"
                             " segmenter")
    check_widths(card.get("widths", [16, 32, 64, 128]), card_path, SegmenterError)
    size = card.get("input_size", 128)
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 1024:
        raise SegmenterError(f"{card_path}: input_size must be an integer in 16..1024, got {str(size)[:40]}")
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


