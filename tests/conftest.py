"""Shared fixtures: synthetic cells and a small classifier trained on them in the test session.

``CERVSEG_TEST_THREADS=N`` runs the suite with N torch intra-op threads (CI runs it with 1 and 2;
unset: torch's default). The classifier is trained with one thread whatever N is, so on one
machine it is the same network for every N; the quality bounds in the tests come from the spread
over training seeds and thread counts in ``benchmarks/results/test_bounds.md``.
"""

from __future__ import annotations

import os

import pytest
from synthetic import synthetic_cell, synthetic_set, train_synthetic_classifier

from napari_cervseg.classify import save_model
from napari_cervseg.io.datasets import default_data_root


def pytest_configure(config):
    # the widgets' background warm-up would run the default model beside the tests (and count in
    # tests that hold the n-th explanation): off, except where a test turns it on
    os.environ["CERVSEG_NO_WARMUP"] = "1"
    threads = os.environ.get("CERVSEG_TEST_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def pytest_report_header(config):
    import torch

    return f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads (CERVSEG_TEST_THREADS)"


@pytest.fixture(scope="session")
def synthetic_cells():
    return synthetic_set(24, seed=7)


@pytest.fixture(scope="session")
def one_cell():
    return synthetic_cell((110, 124), abnormal=True, seed=3)


@pytest.fixture(scope="session")
def trained_synthetic_model():
    """CompactCNN trained for a few seconds to tell large-nucleus (abnormal) from small-nucleus cells
    (seed 0, one thread, deterministic algorithms: see train_synthetic_classifier)."""
    return train_synthetic_classifier(seed=0, threads=1)


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
