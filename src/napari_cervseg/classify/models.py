"""Classifier architectures, the model registry, and weights I/O (safetensors + JSON model card).

Loading never executes code from a file: weights are read with ``safetensors`` (or
``torch.load(weights_only=True)`` for a plain state dict), and the card is JSON.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .classifier import (
    CLASS_NAMES,
    CellClassifier,
    ModelError,
    check_regular_file,
    pick_device,
    read_card_json,
    validate_card,
    wrap_model,
)
from .keras_models import KERAS_SUFFIXES, load_keras_model
from .networks import ARCHITECTURES, build_architecture
from .preprocess import PreprocessConfig

CARD_FORMAT = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def save_model(model: CellClassifier | nn.Module, path, card: dict | None = None) -> Path:
    """Save a classifier as ``<path>.safetensors`` with its JSON model card ``<path>.json`` beside it.

    Parameters
    ----------
    model : CellClassifier or torch.nn.Module
        The classifier (its preprocessing, class names and CAM layer go into the card).
    path : str or Path
        Where to write; the suffix becomes ``.safetensors``.
    card : dict, optional
        The model card (architecture, training data and figures); the model's own by default.

    Returns
    -------
    Path
        The weights file written.

    See Also
    --------
    load_model : reads it back (no code is executed).

    Examples
    --------
    >>> from napari_cervseg import load_model, save_model
    >>> save_model(load_model("default"), "copy.safetensors")  # doctest: +SKIP
    PosixPath('copy.safetensors')
    """
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
    # a model's statistics sidecar (<name>.applicability.safetensors) is not a model
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors")) if "." not in p.stem}


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
    return validate_card(card, card_path)


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
    """Load a classifier by bundled name or from a file with its JSON card.

    Nothing is unpickled: ``.safetensors`` is read by safetensors, ``.pt``/``.pth`` state dicts by
    ``torch.load(weights_only=True)``, Keras ``.keras`` / ``.h5`` models by Keras 3 (torch backend,
    ``safe_mode``; the ``keras`` extra, see :mod:`napari_cervseg.classify.keras_models`). Loaded
    models are cached (keyed on the file and its card).

    Parameters
    ----------
    name_or_path : str, Path, CellClassifier or torch.nn.Module
        ``"default"`` (the bundled model), another bundled name, a weights file, or a model
        (returned as is, moved to ``device`` if given).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ... (default: CUDA, else MPS, else CPU).

    Returns
    -------
    CellClassifier

    Raises
    ------
    ModelError
        A missing, wrong or corrupt file or card (the message says what would work).

    See Also
    --------
    save_model, wrap_model

    Examples
    --------
    >>> from napari_cervseg import load_model
    >>> load_model("default").class_names
    ('normal', 'abnormal')
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
        check_regular_file(weights)
    return weights


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int, _size: int, _card_version, device: str) -> CellClassifier:
    """Load once per (file, version, device): the pipeline calls load_model for every cell."""
    weights = Path(path)
    if weights.suffix.lower() in KERAS_SUFFIXES:

        return load_keras_model(weights, device)
    card = _read_card(weights)
    arch = card["architecture"]
    try:
        net = build_architecture(arch, **card.get("arch_kwargs", {}))
    except (TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{weights}: cannot build {arch!r} from the card's arch_kwargs ({exc})") from exc
    cam_layer = card.get("cam_layer", ARCHITECTURES[arch]["cam_layer"])
    if cam_layer is not None and cam_layer not in dict(net.named_modules()):
        raise ModelError(f"{weights}: card field 'cam_layer' {cam_layer!r} is not a layer of {arch!r};"
                         f" give one such as {ARCHITECTURES[arch]['cam_layer']!r}")
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
        cam_layer=cam_layer,
        lrp_applicable=info["lrp"],
        source=str(weights),
    )
    return model.to(device)
