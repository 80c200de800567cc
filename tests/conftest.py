"""Shared fixtures: synthetic cells and a small classifier trained on them in the test session."""

from __future__ import annotations

import pytest
from synthetic import synthetic_cell, synthetic_set, train_synthetic_classifier

from napari_cervseg.classify import save_model
from napari_cervseg.io.datasets import default_data_root


@pytest.fixture(scope="session")
def synthetic_cells():
    return synthetic_set(24, seed=7)


@pytest.fixture(scope="session")
def one_cell():
    return synthetic_cell((110, 124), abnormal=True, seed=3)


@pytest.fixture(scope="session")
def trained_synthetic_model():
    """CompactCNN trained for a few seconds to tell large-nucleus (abnormal) from small-nucleus cells."""
    return train_synthetic_classifier()


@pytest.fixture(scope="session")
def herlev_root():
    root = default_data_root()
    if root is None:
        pytest.skip("Herlev development data not found (../shared/data/herlev or $CERVSEG_DATA)")
    return root


@pytest.fixture()
def model_file(tmp_path, trained_synthetic_model):
    """The synthetic classifier as a .safetensors file (what worker processes load by path)."""
    return str(save_model(trained_synthetic_model, tmp_path / "model" / "synthetic.safetensors",
                          {**trained_synthetic_model.card}))
