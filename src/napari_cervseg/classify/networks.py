"""The classifier architectures: the compact default, VGG16-Adapted128 (and Simplified) and the
XceptionNet heads, all trained from scratch (no downloaded weights)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import ModelError


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


class ConcatFeatures(nn.Module):
    """The members' last feature maps side by side (channels concatenated): one layer that the CAM
    family hooks, so that a heatmap explains the ensemble's own score, not one member's."""

    def __init__(self, parts):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x):
        return torch.cat([part(x) for part in self.parts], 1)


class _MemberView(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x):
        return self.head(self.features(x))


class CompactEnsemble(nn.Module):
    """Compact networks averaged: the output is the log of the members' mean class probability,
    so softmax (what classify() applies) gives exactly that mean.

    ``features`` (a :class:`ConcatFeatures`) is the CAM layer; ``heads[i]`` is member i's pooling
    and linear layer, applied to its own channels. Members need the same number of blocks (the
    same feature-map size); their widths may differ.
    """

    def __init__(self, members, n_classes: int = 2):
        super().__init__()
        if not isinstance(members, (list, tuple)) or len(members) < 2:
            raise ModelError("an ensemble needs a list of at least 2 members' arch_kwargs")
        nets = [CompactCNN(**{"n_classes": n_classes, **kw}) for kw in members]
        depths = {len(net.features) for net in nets}
        if len(depths) != 1:
            raise ModelError(f"ensemble members have {sorted(depths)} blocks; members need the same number"
                             " (their feature maps are concatenated)")
        self.features = ConcatFeatures([net.features for net in nets])
        self.heads = nn.ModuleList(
            nn.Sequential(OrderedDict(pool=net.pool, flatten=net.flatten, dropout=net.dropout,
                                      classifier=net.classifier)) for net in nets)
        self.channels = [net.classifier.in_features for net in nets]

    def forward(self, x):
        chunks = torch.split(self.features(x), self.channels, 1)
        log_p = torch.stack([F.log_softmax(head(c), 1) for head, c in zip(self.heads, chunks, strict=True)])
        return torch.logsumexp(log_p, 0) - math.log(len(self.heads))

    def member(self, i: int) -> nn.Module:
        """Member ``i`` as a plain network (its own modules, shared, not copied): what LRP explains."""
        return _MemberView(self.features.parts[i], self.heads[i])

    @classmethod
    def from_members(cls, members: list[CompactCNN], kwargs: list[dict]) -> CompactEnsemble:
        """An ensemble holding copies of trained compact networks' weights."""
        n_classes = members[0].classifier.out_features
        ens = cls(kwargs, n_classes=n_classes)
        for i, net in enumerate(members):
            ens.features.parts[i].load_state_dict(net.features.state_dict())
            ens.heads[i].classifier.load_state_dict(net.classifier.state_dict())
        return ens.eval()


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
    # LRP explains each member and averages the relevance (explain/lrp.py)
    "compact-ensemble": {"build": lambda **kw: CompactEnsemble(**kw), "input_size": 128, "cam_layer": "features",
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
