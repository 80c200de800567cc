"""The self-trained student's options (issue 15): test-time augmentation, the cell threshold, the
GrabCut refinement of its probabilities; and the default method being the self-trained one."""

import numpy as np
import pytest
from synthetic import synthetic_cell

from napari_cervseg.segment.refine import combine
from napari_cervseg.segment.settings import (
    DEFAULT_SEGMENT_METHOD,
    SegmentationError,
    SelfTrainedSettings,
    settings_for,
)
from napari_cervseg.segment.student import STUDENT_REFINE, labels_from_probabilities, load_segmenter


@pytest.fixture(scope="module")
def square_cell():
    rgb, truth, _ = synthetic_cell((128, 128), seed=3)
    return rgb, truth


def test_dihedral_tta_is_equivariant_and_flips_are_not_all_of_it(square_cell):
    """Averaging over all 8 views: the prediction of a turned image is the turned prediction (holds
    only if every view is undone by its own inverse); a single pass has no such symmetry."""
    seg = load_segmenter("default")
    rgb = square_cell[0]
    turned = np.ascontiguousarray(np.rot90(rgb, 1))
    dihedral = seg.probabilities(rgb, "dihedral")
    np.testing.assert_allclose(seg.probabilities(turned, "dihedral"), np.rot90(dihedral, 1), atol=1e-4)
    single = seg.probabilities(rgb, "none")
    assert np.abs(seg.probabilities(turned, "none") - np.rot90(single, 1)).max() > 1e-3
    assert np.allclose(single.sum(-1), 1, atol=1e-4) and np.allclose(dihedral.sum(-1), 1, atol=1e-4)


def test_a_lower_cell_threshold_grows_the_cell_only(square_cell):
    rgb = square_cell[0]
    probs = load_segmenter("default").probabilities(rgb)
    cells = [labels_from_probabilities(rgb, probs, cell_threshold=t) for t in (0.8, 0.5, 0.2)]
    sizes = [int((c >= 1).sum()) for c in cells]
    assert sizes[0] <= sizes[1] <= sizes[2] and sizes[0] < sizes[2]
    nuclei = [(c == 2) for c in cells]
    assert all((n == nuclei[0]).all() for n in nuclei)  # the nucleus is the argmax whatever the threshold


@pytest.mark.parametrize("refine", STUDENT_REFINE)
def test_every_refinement_keeps_the_label_contract(square_cell, refine):
    rgb, truth = square_cell
    probs = load_segmenter("default").probabilities(rgb)
    labels = labels_from_probabilities(rgb, probs, refine)
    assert labels.shape == rgb.shape[:2] and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
    assert (labels == 2).any() and (labels == 1).any()
    assert ((labels == 2) <= (labels >= 1)).all()


def test_bad_student_settings_are_refused_with_the_valid_ones():
    with pytest.raises(SegmentationError, match="unknown tta 'rot'.*dihedral"):
        SelfTrainedSettings(tta="rot")
    with pytest.raises(SegmentationError, match="unknown refine 'crf'.*grabcut-cell"):
        SelfTrainedSettings(refine="crf")
    with pytest.raises(SegmentationError, match="cell_threshold must be a number from 0.01 to 0.99"):
        SelfTrainedSettings(cell_threshold=1.5)


def test_the_default_method_is_the_self_trained_one_with_the_validated_settings():
    """What benchmarks/val_default.py measured as the winner is what the code runs by default."""
    import json
    from pathlib import Path

    chosen = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "default_method_val.json").read_text())
    assert DEFAULT_SEGMENT_METHOD == chosen["winner_method"] == "self-trained"
    assert settings_for(DEFAULT_SEGMENT_METHOD)[0].as_dict() == chosen["winner_settings"]
    # the threshold left unset is the bundled segmenter card's, the one the validation run used
    ran_with = chosen["candidates"][chosen["winner"]]["ran_with"]["cell_threshold"]
    assert load_segmenter("default").cell_threshold == ran_with == 0.2


def test_an_unset_threshold_is_the_segmenter_cards_and_a_card_without_one_means_the_argmax(tmp_path, square_cell):
    """A threshold belongs to one network's calibration: another segmenter does not inherit 0.2."""
    import json
    import shutil

    from napari_cervseg.segment.student import SEGMENTER_DIR

    plain = tmp_path / "plain.safetensors"
    shutil.copy(SEGMENTER_DIR / "default.safetensors", plain)
    card = json.loads((SEGMENTER_DIR / "default.json").read_text())
    card.pop("cell_threshold")
    plain.with_suffix(".json").write_text(json.dumps(card))
    assert load_segmenter(plain).cell_threshold is None and load_segmenter("default").cell_threshold == 0.2
    rgb = square_cell[0]
    probs = load_segmenter(plain).probabilities(rgb)
    argmax = probs.argmax(-1)
    np.testing.assert_array_equal(load_segmenter(plain).predict(rgb) >= 1, combine(argmax == 2, argmax >= 1) >= 1)
    with pytest.raises(SegmentationError, match="cell_threshold must be a number from 0.01 to 0.99 or unset"):
        SelfTrainedSettings(cell_threshold="high")
    assert SelfTrainedSettings(cell_threshold="").cell_threshold is None  # an emptied text control
    assert SelfTrainedSettings(cell_threshold=" 0.3 ").cell_threshold == 0.3
