"""Classifier architectures, the model registry, and weights I/O (safetensors + JSON model card).

Loading never executes code from a file: weights are read with ``safetensors`` (or
``torch.load(weights_only=True)`` for a plain state dict), and the card is JSON.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import PreprocessConfig

CLASS_NAMES = ("normal", "abnormal")
CARD_FORMAT = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class ModelError(ValueError):
    """A model name, file or card that cannot be used; the message says why and what would work."""


# --------------------------------------------------------------------------------------------
# architectures


def _conv_block(c_in: int, c_out: int, n_convs: int, batchnorm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=False))
    return layers


class CompactCNN(nn.Module):
    """The bundled default: a plain conv / BatchNorm / ReLU / max-pool stack, GAP and one linear layer.

    Plain on purpose: LRP (zennit) applies rule by rule to such a stack, BatchNorm is merged into
    the convolutions by a canonizer, and Grad-CAM can use any block's output. ``features`` is an
    ``nn.Sequential`` of blocks named ``block1``... so layers are addressable by name
    (``features.block3``).
    """

    def __init__(self, widths=(32, 64, 128, 256), convs_per_block: int = 2, dropout: float = 0.3,
                 n_classes: int = 2):
        super().__init__()
        blocks = []
        c_in = 3
        for i, width in enumerate(widths):
            layers = _conv_block(c_in, width, convs_per_block, batchnorm=True)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            blocks.append((f"block{i + 1}", nn.Sequential(*layers)))
            c_in = width
        self.features = nn.Sequential(OrderedDict(blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, n_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


class VGG16Adapted128(nn.Module):
    """VGG16-Adapted128 (paper Sec. III-C-2) and its Simplified variant.

    128 px input. Full: 5 conv blocks -> 4x4x512, the 4x4 average pool "kept lossless" (identity
    at this size), FC 8192-4096-4096-2. Simplified: the last conv block removed -> 8x8x512,
    FC 32768-4096-4096-2. :meth:`to_conv_head` turns the dense layers into equivalent
    convolutions (4x4 or 8x8, then 1x1) for LRP, giving identical logits.
    """

    CFG = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

    def __init__(self, simplified: bool = False, n_classes: int = 2, dropout: float = 0.5):
        super().__init__()
        cfg = self.CFG[:4] if simplified else self.CFG
        blocks, c_in = [], 3
        for i, (width, n) in enumerate(cfg):
            blocks.append((f"block{i + 1}",
                           nn.Sequential(*_conv_block(c_in, width, n, batchnorm=False), nn.MaxPool2d(2))))
            c_in = width
        self.features = nn.Sequential(OrderedDict(blocks))
        self.spatial = 8 if simplified else 4
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(512 * self.spatial**2, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, n_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))

    def to_conv_head(self) -> nn.Module:
        """An equivalent all-convolutional network (dense layers as Conv kxk, 1x1, 1x1)."""
        fc1, _, _, fc2, _, _, fc3 = self.classifier
        k = self.spatial
        conv1 = nn.Conv2d(512, fc1.out_features, k)
        conv1.weight.data = fc1.weight.data.view(fc1.out_features, 512, k, k).clone()
        conv1.bias.data = fc1.bias.data.clone()
        conv2 = nn.Conv2d(fc2.in_features, fc2.out_features, 1)
        conv2.weight.data = fc2.weight.data[:, :, None, None].clone()
        conv2.bias.data = fc2.bias.data.clone()
        conv3 = nn.Conv2d(fc3.in_features, fc3.out_features, 1)
        conv3.weight.data = fc3.weight.data[:, :, None, None].clone()
        conv3.bias.data = fc3.bias.data.clone()
        head = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), conv3, nn.Flatten())
        net = nn.Sequential()
        net.add_module("features", self.features)
        net.add_module("classifier", head)
        return net.eval()


def _build_compact(**kw):
    return CompactCNN(**kw)


class XceptionHead(nn.Module):
    """The paper's XceptionNet classifier: timm's ``legacy_xception`` base (the Keras Xception's
    layout), global average pooling, BatchNorm, Dense(``units``, ReLU), Dropout 0.45, 2-way output.

    The paper froze an ImageNet-pretrained base; no pretrained weights can be downloaded here, so
    the whole network trains from scratch. The dense layer's L2 regularisation is the optimiser's
    weight decay. Needs the ``xception`` extra (timm).
    """

    def __init__(self, units: int = 256, n_classes: int = 2, dropout: float = 0.45):
        super().__init__()
        try:
            import timm
        except ImportError as exc:
            raise ModelError("the Xception architectures need timm: pip install 'napari-cervseg[xception]'") from exc
        self.base = timm.create_model("legacy_xception", pretrained=False, num_classes=0, global_pool="")
        features = self.base.num_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.BatchNorm1d(features)
        self.dense = nn.Linear(features, units)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(units, n_classes)

    def forward(self, x):
        f = self.norm(self.pool(self.base(x)).flatten(1))
        return self.classifier(self.dropout(F.relu(self.dense(f))))


ARCHITECTURES = {
    "compact": {"build": _build_compact, "input_size": 128, "cam_layer": "features.block4",
                "lrp": True},
    "vgg16-adapted128": {"build": lambda **kw: VGG16Adapted128(simplified=False, **kw),
                         "input_size": 128, "cam_layer": "features.block5", "lrp": True},
    "vgg16-adapted128-simplified": {"build": lambda **kw: VGG16Adapted128(simplified=True, **kw),
                                    "input_size": 128, "cam_layer": "features.block4", "lrp": True},
    # depthwise-separable convolutions: the CAM family applies, our LRP rule sets are not mapped on them
    "xception-256": {"build": lambda **kw: XceptionHead(units=256, **kw), "input_size": 224,
                     "cam_layer": "base.act4", "lrp": False},
    "xception-1024": {"build": lambda **kw: XceptionHead(units=1024, **kw), "input_size": 224,
                      "cam_layer": "base.act4", "lrp": False},
}


def build_architecture(name: str, **kwargs) -> nn.Module:
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]["build"](**kwargs)


# --------------------------------------------------------------------------------------------
# the loaded model


def pick_device(device=None) -> torch.device:
    """CUDA if available, else Apple MPS, else CPU; an explicit ``device`` wins."""
    if device not in (None, "auto"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class CellClassifier:
    """A classifier ready for inference and explanation: network + card + preprocessing."""

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


LRP_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
              nn.Flatten, nn.Dropout, nn.Identity)


def wrap_model(net: nn.Module, preprocess: PreprocessConfig | None = None, cam_layer: str | None = None,
               class_names=CLASS_NAMES, lrp_applicable: bool | None = None) -> CellClassifier:
    """Wrap any torch classifier (logits for ``class_names``) for the pipeline.

    ``cam_layer`` names the module whose output Grad-CAM uses (``dict(net.named_modules())`` keys);
    by default the last ``nn.Conv2d``-containing module is guessed.
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


# --------------------------------------------------------------------------------------------
# weights I/O


def save_model(model: CellClassifier | nn.Module, path, card: dict | None = None) -> Path:
    """Write ``<path>.safetensors`` and the card ``<path>.json`` beside it. Returns the weights path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    net = model.net if isinstance(model, CellClassifier) else model
    card = dict(card if card is not None else getattr(model, "card", {}))
    if isinstance(model, CellClassifier):
        card.setdefault("preprocess", model.preprocess.to_dict())
        card.setdefault("class_names", list(model.class_names))
        card.setdefault("cam_layer", model.cam_layer)
    card.setdefault("format", CARD_FORMAT)
    if "architecture" not in card:
        raise ModelError("the model card needs an 'architecture' (one of the registry's names)")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"architecture": card["architecture"]})
    tmp.chmod(0o644)  # safetensors creates the file owner-only; a model is meant to be shared
    tmp.replace(path)
    card_path = path.with_suffix(".json")
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=2, default=_json_default))
    tmp_card.replace(card_path)
    return path


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def bundled_models() -> dict[str, Path]:
    """Names of the models shipped in the package -> weights path."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def _read_card(weights: Path) -> dict:
    card_path = weights.with_suffix(".json")
    if not card_path.exists():
        raise ModelError(
            f"{weights}: no model card {card_path.name} beside it; a card (JSON with 'architecture',"
            " 'preprocess', 'class_names') tells how to build and feed the network"
        )
    card = read_card_json(card_path)
    if "architecture" not in card:
        raise ModelError(f"{card_path}: the card has no 'architecture' key")
    return card


def read_card_json(card_path: Path) -> dict:
    """A model card's JSON object, or a ModelError naming the file."""
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{card_path}: not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: the card must be a JSON object")
    return card


def _read_state(weights: Path) -> dict:
    suffix = weights.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(weights))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{weights}: not a readable safetensors file ({exc})") from exc
    if suffix in (".pt", ".pth"):
        import pickle

        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise ModelError(
                f"{weights}: refused or unreadable ({type(exc).__name__}). Only plain state dicts load"
                " (torch.load weights_only=True); code in a pickle is never executed. Convert it to"
                " .safetensors."
            ) from exc
        if not isinstance(state, dict):
            raise ModelError(f"{weights}: expected a state dict, got {type(state).__name__}")
        return state
    raise ModelError(
        f"{weights}: unsupported model file type {suffix!r}; use .safetensors (+ .json card), a"
        " state dict .pt/.pth with a card, or a Keras 3 .keras/.h5 model"
    )


def load_model(name_or_path="default", device=None) -> CellClassifier:
    """Load a classifier by bundled name (``"default"``) or from a ``.safetensors`` file + JSON card.

    Nothing is unpickled: ``.safetensors`` is read by safetensors, ``.pt``/``.pth`` state dicts by
    ``torch.load(weights_only=True)``, Keras ``.keras`` / ``.h5`` models by Keras 3 (torch backend,
    ``safe_mode``; the ``keras`` extra, see :mod:`napari_cervseg.core.keras_io`). A wrong or corrupt
    file raises :class:`ModelError`.
    """
    if isinstance(name_or_path, CellClassifier):
        return name_or_path.to(device) if device is not None else name_or_path
    if isinstance(name_or_path, nn.Module):
        return wrap_model(name_or_path).to(pick_device(device))
    key = str(name_or_path)
    weights = _resolve_weights(key)
    stat = weights.stat()
    card = weights.with_suffix(".json")
    # an edited card (class names, preprocessing) must not be answered from the cache
    card_version = (card.stat().st_mtime_ns, card.stat().st_size) if card.exists() else None
    return _load_cached(str(weights.resolve()), stat.st_mtime_ns, stat.st_size, card_version,
                        str(pick_device(device)))


def _resolve_weights(key: str) -> Path:
    bundled = bundled_models()
    if key in bundled:
        weights = bundled[key]
    else:
        weights = Path(key).expanduser()
        if not weights.exists():
            raise ModelError(
                f"model {key!r} is neither a bundled model ({', '.join(bundled) or 'none bundled'})"
                " nor an existing file"
            )
        if weights.is_dir():
            raise ModelError(f"{weights}: is a folder; pass the .safetensors file inside it")
    return weights


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int, _size: int, _card_version, device: str) -> CellClassifier:
    """Load once per (file, version, device): the pipeline calls load_model for every cell."""
    weights = Path(path)
    if weights.suffix.lower() in (".keras", ".h5", ".hdf5"):
        from .keras_io import load_keras_model

        return load_keras_model(weights, device)
    card = _read_card(weights)
    arch = card["architecture"]
    net = build_architecture(arch, **card.get("arch_kwargs", {}))
    state = _read_state(weights)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ModelError(
            f"{weights}: weights do not match architecture {arch!r} from its card: {' '.join(first)}"
        ) from exc
    net.eval()
    info = ARCHITECTURES[arch]
    model = CellClassifier(
        net=net,
        card=card,
        preprocess=PreprocessConfig.from_dict(card.get("preprocess", {"input_size": info["input_size"]})),
        class_names=tuple(card.get("class_names", CLASS_NAMES)),
        cam_layer=card.get("cam_layer", info["cam_layer"]),
        lrp_applicable=info["lrp"],
        source=str(weights),
    )
    return model.to(device)
