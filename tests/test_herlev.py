"""Checks on the real development data (skipped with a reason when ../shared/data/herlev is absent)."""

import numpy as np
import pytest

from napari_cervseg import load_model, segment_cell
from napari_cervseg.io.datasets import read_dataset, stratified_split
from napari_cervseg.measure.scores import segmentation_scores

pytestmark = pytest.mark.herlev


def test_reader_sees_the_documented_layout(herlev_root):
    samples = read_dataset(herlev_root)
    assert len(samples) == 733
    # the per-class counts of the data README (59 + 56 + 78 normal = 193; its "173 normal, 560
    # abnormal" line does not add up with them)
    counts = {g: sum(s.group == g for s in samples) for g in {s.group for s in samples}}
    assert counts == {"normal_superficiel": 59, "normal_intermediate": 56, "normal_columnar": 78,
                      "light_dysplastic": 146, "moderate_dysplastic": 117, "severe_dysplastic": 157,
                      "carcinoma_in_situ": 120}
    assert sum(s.label == "normal" for s in samples) == 193
    assert sum(s.mask_path is not None for s in samples) == 655
    assert all(s.mask_path is None for s in samples if s.group == "normal_columnar")


def test_split_is_stratified_disjoint_and_reproducible(herlev_root):
    samples = read_dataset(herlev_root)
    a, b = stratified_split(samples, seed=0), stratified_split(samples, seed=0)
    assert a == b
    parts = [set(a[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, parts)) == len(samples)
    groups = {s.name: s.group for s in samples}
    for group in set(groups.values()):  # every Herlev class is in the test split
        assert any(groups[n] == group for n in a["test"])


def test_default_model_card_matches_its_split(herlev_root):
    model = load_model("default")
    split = model.card["training"]["split"]
    assert not set(split["train"]) & set(split["test"])
    assert split == stratified_split(read_dataset(herlev_root), model.card["training"]["config"]["split_fractions"],
                                     model.card["training"]["config"]["seed"])


def test_default_pipeline_on_real_test_cells(herlev_root):
    """A regression guard on real cells the model never trained on (bound well below the figure
    measured by the evaluation; see the README)."""
    model = load_model("default")
    test = set(model.card["training"]["split"]["test"])
    samples = [s for s in read_dataset(herlev_root) if s.name in test and s.mask_path is not None][:12]
    nucleus = [segmentation_scores(segment_cell(s.load_image(), model=model).labels, s.load_mask())["nucleus"]["dice"]
               for s in samples]
    assert np.mean(nucleus) > 0.4
