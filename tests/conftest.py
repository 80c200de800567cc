"""Shared fixtures: synthetic cells and a small classifier trained on them in the test session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cervseg.core.datasets import default_data_root
from napari_cervseg.core.models import CompactCNN, wrap_model
from napari_cervseg.core.preprocess import PreprocessConfig, enhance, normalise, resize
from napari_cervseg.core.synthetic import synthetic_cell, synthetic_set


@pytest.fixture(scope="session")
def synthetic_cells():
    return synthetic_set(24, seed=7)


@pytest.fixture(scope="session")
def one_cell():
    return synthetic_cell((110, 124), abnormal=True, seed=3)


@pytest.fixture(scope="session")
def trained_synthetic_model():
    """CompactCNN trained for a few seconds to tell large-nucleus (abnormal) from small-nucleus cells."""
    torch.manual_seed(0)
    config = PreprocessConfig(input_size=64)
    cells = synthetic_set(160, seed=11, size_range=(60, 140))
    x = torch.from_numpy(np.stack([normalise(enhance(resize(c[0], 64), config), config) for c in cells]))
    y = torch.tensor([c[2] == "abnormal" for c in cells], dtype=torch.long)
    net = CompactCNN(widths=(8, 16, 32, 32), dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(12):
        perm = torch.randperm(len(x))
        net.train()
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    model = wrap_model(net, preprocess=config, cam_layer="features.block3")
    model.card = {"architecture": "compact", "arch_kwargs": {"widths": [8, 16, 32, 32], "dropout": 0.0},
                  "train_accuracy": acc}
    return model


@pytest.fixture(scope="session")
def herlev_root():
    root = default_data_root()
    if root is None:
        pytest.skip("Herlev development data not found (../shared/data/herlev or $CERVSEG_DATA)")
    return root
