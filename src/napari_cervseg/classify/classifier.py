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


def read_card_json(card_path: Path) -> dict:
    """A model card's JSON object, or a ModelError naming the file."""
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{card_path}: not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: the card must be a JSON object")
    return card
