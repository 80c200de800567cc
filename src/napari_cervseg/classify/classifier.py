"""A trained classifier with what explaining it needs: the network, its preprocessing, the CAM
layer, class names and its model card. Built by :func:`wrap_model` or loaded by
:func:`~napari_cervseg.classify.models.load_model`."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .preprocess import PreprocessConfig

CLASS_NAMES = ("normal", "abnormal")


class ModelError(ValueError):
    """A model name, file or card that cannot be used; the message says why and what would work."""


def pick_device(device=None) -> torch.device:
    """CUDA if available, else Apple MPS, else CPU; an explicit ``device`` wins (if it exists here:
    else a ModelError that names the devices that do)."""
    if device not in (None, "auto"):
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def check_device(device) -> torch.device:
    """``device`` as a torch device that exists on this machine, or a ModelError saying which do."""
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device))
        except (RuntimeError, ValueError, TypeError):
            raise ModelError(f"device {device!r} is not a device name; use one of"
                             f" {', '.join(_available_devices())} (or auto)") from None
    ok = dev.type == "cpu"
    if dev.type == "cuda":
        ok = torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count())
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        ok = mps is not None and mps.is_available()
    if not ok:
        raise ModelError(f"device {str(device)!r} is not available on this machine; use one of"
                         f" {', '.join(_available_devices())} (or auto)")
    return dev


@dataclass
class CellClassifier:
    """A classifier ready for inference and explanation: network + card + preprocessing.

    Attributes
    ----------
    net : torch.nn.Module
        The network (eval mode), logits for ``class_names``.
    card : dict
        The model card: architecture, training data and figures, operating points.
    preprocess : PreprocessConfig
        How an RGB uint8 image becomes the network's input.
    class_names : tuple of str
    cam_layer : str or None
        The module the CAM family explains.
    lrp_applicable : bool
        Whether the LRP rule sets cover every layer.
    source : str
        Where it was loaded from.
    lock : threading.RLock
        Serialises use of ``net`` across threads (explanations hook the shared network).
    """

    net: nn.Module
    card: dict = field(default_factory=dict)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    class_names: tuple[str, ...] = CLASS_NAMES
    cam_layer: str | None = None
    lrp_applicable: bool = False
    source: str = "<in memory>"
    #: serialises use of ``net``: explanations attach hooks to the shared network, and another
    #: thread's forward pass (napari workers, a threaded Dask worker) would feed those hooks
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.net.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    @property
    def name(self) -> str:
        return self.card.get("name") or self.card.get("architecture", "custom")

    @property
    def class_views(self) -> int:
        """How many views of a cell its class probabilities average: 1 (the image as it is) or 8
        (its 4 quarter turns, each also mirrored); the card's ``class_views``, whose screening
        threshold was chosen on probabilities made the same way."""
        return int(self.card.get("class_views", 1))

    def to(self, device) -> CellClassifier:
        self.net.to(pick_device(device))
        return self

    def class_index(self, target) -> int:
        """Index of a class given by name or index; raises ModelError with the known names."""
        if isinstance(target, str):
            if target not in self.class_names:
                raise ModelError(f"unknown class {target!r}; this model knows {list(self.class_names)}")
            return self.class_names.index(target)
        idx = int(target)
        if not 0 <= idx < len(self.class_names):
            raise ModelError(f"class index {idx} out of range for {list(self.class_names)}")
        return idx


#: ``class_views`` a card may give (:attr:`CellClassifier.class_views`)
CLASS_VIEW_CHOICES = (1, 8)


LRP_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
              nn.Flatten, nn.Dropout, nn.Identity)


def wrap_model(net: nn.Module, preprocess: PreprocessConfig | None = None, cam_layer: str | None = None,
               class_names=CLASS_NAMES, lrp_applicable: bool | None = None) -> CellClassifier:
    """Wrap any torch classifier (logits for ``class_names``) for the pipeline.

    Parameters
    ----------
    net : torch.nn.Module
        A network mapping (N, 3, S, S) images to (N, len(class_names)) logits.
    preprocess : PreprocessConfig, optional
        Input size, equalisation and normalisation (defaults: 128 px, ImageNet statistics).
    cam_layer : str, optional
        The module whose output the CAM family explains (a ``dict(net.named_modules())`` key);
        by default the last ``nn.Conv2d``.
    class_names : sequence of str
        The classes in logit order (``("normal", "abnormal")``).
    lrp_applicable : bool, optional
        Whether LRP rules cover every layer (checked from the layer types when None).

    Returns
    -------
    CellClassifier

    Examples
    --------
    >>> from napari_cervseg import wrap_model
    >>> from napari_cervseg.classify import CompactCNN
    >>> wrap_model(CompactCNN()).class_names
    ('normal', 'abnormal')
    """
    net.eval()
    if cam_layer is None:
        conv_names = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
        if not conv_names:
            raise ModelError("the network has no Conv2d layer; give cam_layer= explicitly")
        cam_layer = conv_names[-1]
    if lrp_applicable is None:
        # LRP rules exist for a plain stack of these layers; anything else (skip connections hide
        # in custom modules) makes LRP unavailable rather than silently wrong
        leaves = [m for m in net.modules() if not list(m.children())]
        lrp_applicable = all(isinstance(m, LRP_LAYERS) for m in leaves)
    return CellClassifier(net=net, preprocess=preprocess or PreprocessConfig(), cam_layer=cam_layer,
                          class_names=tuple(class_names), lrp_applicable=bool(lrp_applicable))


#: a model card larger than this is refused before parsing (the bundled one is ~85 KB)
CARD_MAX_BYTES = 8 * 1024 * 1024
#: JSON nested deeper than this is refused before parsing (the bundled card is 6 deep)
CARD_MAX_DEPTH = 64


def check_regular_file(path: Path) -> None:
    """Refuse, by ``stat`` and before anything opens it, a model path that is not a regular file
    (a FIFO or a device would block or read forever)."""
    from ..io.images import file_kind

    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    kind = file_kind(mode)
    if kind is not None:
        raise ModelError(f"{path}: is a {kind}, not a regular file; pass a model file (.safetensors with its"
                         " .json card, or .keras / .h5)")


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_card_json(card_path: Path) -> dict:
    """A model card's JSON object, or a ModelError naming the file (guarded: regular files only,
    at most :data:`CARD_MAX_BYTES`, nesting at most :data:`CARD_MAX_DEPTH`)."""
    card_path = Path(card_path)
    check_regular_file(card_path)
    size = card_path.stat().st_size
    if size > CARD_MAX_BYTES:
        raise ModelError(f"{card_path}: the card is {size / 1e6:.1f} MB; a model card is a small JSON file"
                         f" (at most {CARD_MAX_BYTES // (1024 * 1024)} MB)")
    try:
        text = card_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{card_path}: cannot be read as UTF-8 text ({exc})") from exc
    if _json_depth(text) > CARD_MAX_DEPTH:
        raise ModelError(f"{card_path}: JSON nested deeper than {CARD_MAX_DEPTH} levels; a model card is a"
                         " flat object of settings")
    try:
        card = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, ...
        raise ModelError(f"{card_path}: not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: the card must be a JSON object")
    return card


# ----------------------------------------------------------------------------------------------
# the card's schema

#: the keyword arguments each architecture takes from the card's ``arch_kwargs``
ARCH_KWARGS = {
    "compact": ("widths", "convs_per_block", "dropout", "n_classes"),
    "compact-ensemble": ("members", "n_classes"),
    "vgg16-adapted128": ("dropout", "n_classes"),
    "vgg16-adapted128-simplified": ("dropout", "n_classes"),
    "xception-256": ("dropout", "n_classes"),
    "xception-1024": ("dropout", "n_classes"),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(where, field_name, problem, works):
    raise ModelError(f"{where}: card field {field_name!r} {problem}; {works}")


def _int_in(where, name, value, low, high):
    if not _is_int(value) or not low <= value <= high:
        _fail(where, name, f"is {str(value)[:60]!r}", f"give an integer from {low} to {high}")


def _real_in(where, name, value, low, high, low_open=False):
    if not _is_real(value) or not (low < value if low_open else low <= value) or not value <= high:
        bound = f"above {low}" if low_open else f"from {low}"
        _fail(where, name, f"is {str(value)[:60]!r}", f"give a finite number {bound} to {high}")


def validate_card(card: dict, where, keras: bool = False) -> dict:
    """Check a model card against its schema; returns it, or raises ModelError naming the field.

    ``architecture`` a registry name (not for Keras); ``arch_kwargs`` that architecture's keyword
    arguments (``widths``: 1-8 integers 1-1024, ``convs_per_block`` 1-8, ``dropout`` 0-0.99,
    ``n_classes`` 2-1000); ``input_size`` and ``preprocess.input_size`` integers 16-1024 (128 for the
    VGG models); ``preprocess.median_ksize`` 0, 1 or an odd integer up to
    31; ``preprocess.equalise`` one of the choices; ``preprocess.mean`` 3 finite numbers,
    ``preprocess.std`` 3 finite numbers > 0; ``class_names`` a list of 2-1000 distinct non-empty
    strings (as many as ``n_classes``); ``cam_layer`` a string; ``operating_points`` an object whose
    entries have an ``abnormal_threshold`` in [0, 1]; ``class_views`` 1 or 8.
    """
    from .preprocess import EQUALISE_CHOICES

    arch = card.get("architecture")
    if not keras:
        if not isinstance(arch, str) or arch not in ARCH_KWARGS:
            _fail(where, "architecture", f"is {str(arch)[:60]!r}", f"give one of {', '.join(ARCH_KWARGS)}")
        kwargs = card.get("arch_kwargs", {})
        if not isinstance(kwargs, dict):
            _fail(where, "arch_kwargs", f"is a {type(kwargs).__name__}", "give a JSON object of keyword arguments")
        for key, value in kwargs.items():
            name = f"arch_kwargs.{key}"
            if key not in ARCH_KWARGS[arch]:
                _fail(where, name, f"is not an argument of {arch!r}", f"use {', '.join(ARCH_KWARGS[arch])}")
            if key == "members":
                if not isinstance(value, list) or not 2 <= len(value) <= 16:
                    _fail(where, name, f"is {str(value)[:60]!r}", "give a list of 2 to 16 members' arch_kwargs")
                for i, member in enumerate(value):
                    if not isinstance(member, dict):
                        _fail(where, f"{name}[{i}]", f"is a {type(member).__name__}",
                              "give a compact network's arch_kwargs object")
                    validate_card({"architecture": "compact", "arch_kwargs": member}, f"{where}: {name}[{i}]")
                    if "n_classes" in member:
                        _fail(where, f"{name}[{i}].n_classes", "is set per member", "give n_classes once, beside members")
            elif key == "widths":
                if not isinstance(value, list) or not 1 <= len(value) <= 8:
                    _fail(where, name, f"is {str(value)[:60]!r}", "give a list of 1 to 8 channel counts")
                for i, w in enumerate(value):
                    _int_in(where, f"{name}[{i}]", w, 1, 1024)
            elif key == "convs_per_block":
                _int_in(where, name, value, 1, 8)
            elif key == "dropout":
                _real_in(where, name, value, 0.0, 0.99)
            elif key == "n_classes":
                _int_in(where, name, value, 2, 1000)
    sizes = [("input_size", card["input_size"])] if "input_size" in card else []
    pre = card.get("preprocess", {})
    if not isinstance(pre, dict):
        _fail(where, "preprocess", f"is a {type(pre).__name__}", "give a JSON object (input_size, mean, std, ...)")
    if "input_size" in pre:
        sizes.append(("preprocess.input_size", pre["input_size"]))
    for name, value in sizes:
        if keras and value is None:
            continue
        _int_in(where, name, value, 16, 1024)
        if arch in ("vgg16-adapted128", "vgg16-adapted128-simplified") and value != 128:
            _fail(where, name, f"is {value}", f"{arch} takes 128 px inputs only: give 128")
    if "median_ksize" in pre:
        k = pre["median_ksize"]
        if not _is_int(k) or not (k in (0, 1) or (k % 2 == 1 and 3 <= k <= 31)):
            _fail(where, "preprocess.median_ksize", f"is {str(k)[:60]!r}", "give 0 or 1 (off) or an odd size 3-31")
    if "equalise" in pre and pre["equalise"] not in EQUALISE_CHOICES:
        _fail(where, "preprocess.equalise", f"is {str(pre['equalise'])[:60]!r}",
              f"give one of {', '.join(EQUALISE_CHOICES)}")
    for key in ("mean", "std"):
        if key in pre:
            value = pre[key]
            if not isinstance(value, list) or len(value) != 3:
                _fail(where, f"preprocess.{key}", f"is {str(value)[:60]!r}", "give a list of 3 numbers (R, G, B)")
            for i, v in enumerate(value):
                if key == "std":
                    _real_in(where, f"preprocess.std[{i}]", v, 0.0, 1e3, low_open=True)
                else:
                    _real_in(where, f"preprocess.mean[{i}]", v, -1e3, 1e3)
    if "class_names" in card:
        names = card["class_names"]
        if (not isinstance(names, list) or not 2 <= len(names) <= 1000
                or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names)):
            _fail(where, "class_names", f"is {str(names)[:60]!r}",
                  'give a list of at least 2 distinct class names, e.g. ["normal", "abnormal"]')
        n_classes = card.get("arch_kwargs", {}).get("n_classes", 2) if not keras else len(names)
        if len(names) != n_classes:
            _fail(where, "class_names", f"names {len(names)} classes", f"the network has {n_classes} outputs")
    elif not keras and card.get("arch_kwargs", {}).get("n_classes", 2) != 2:
        _fail(where, "class_names", "is missing", "name each of the network's outputs")
    if "cam_layer" in card and card["cam_layer"] is not None and not isinstance(card["cam_layer"], str):
        _fail(where, "cam_layer", f"is {str(card['cam_layer'])[:60]!r}", "give a layer name (string)")
    if card.get("class_views", 1) not in CLASS_VIEW_CHOICES or isinstance(card.get("class_views"), bool):
        _fail(where, "class_views", f"is {str(card.get('class_views'))[:60]!r}",
              "give 1 (the image as it is) or 8 (its flips and quarter turns averaged)")
    points = card.get("operating_points", {})
    if not isinstance(points, dict):
        _fail(where, "operating_points", f"is a {type(points).__name__}", "give an object of named thresholds")
    for name, point in points.items():
        if not isinstance(point, dict):
            _fail(where, f"operating_points.{name}", f"is a {type(point).__name__}",
                  "give an object with an abnormal_threshold")
        _real_in(where, f"operating_points.{name}.abnormal_threshold", point.get("abnormal_threshold"), 0.0, 1.0)
    return card
