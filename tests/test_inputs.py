"""Bad and unusual inputs get the documented outcome (README, "Input images")."""

import numpy as np
import pytest

from napari_cervseg import ImageError, segment_cell
from napari_cervseg.io.images import read_image, to_rgb_uint8


def test_empty_image_is_refused(trained_synthetic_model):
    with pytest.raises(ImageError, match="empty"):
        segment_cell(np.zeros((0, 10, 3), np.uint8), model=trained_synthetic_model)


def test_one_pixel_image_gets_no_verdict_and_no_cell_is_invented(trained_synthetic_model):
    # issue 16: the raw probabilities stay, but no class is called on what is not a cell
    result = segment_cell(np.full((1, 1, 3), 120, np.uint8), model=trained_synthetic_model)
    assert result.predicted_class is None and set(result.probabilities) == {"normal", "abnormal"}
    assert {"too_small", "no_contrast", "no_cell_found"} <= set(result.not_judgeable)
    assert result.labels.shape == (1, 1) and not result.cell_found
    assert any("no cell found" in w for w in result.warnings)


def test_constant_image_gives_no_cell_and_no_verdict(trained_synthetic_model):
    result = segment_cell(np.full((64, 64), 200, np.uint8), model=trained_synthetic_model)
    assert not result.cell_found and result.predicted_class is None
    assert "no_contrast" in result.not_judgeable and result.probabilities


def test_rgba_drops_alpha_and_matches_rgb(trained_synthetic_model, one_cell):
    rgb = one_cell[0]
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    a = segment_cell(rgba, model=trained_synthetic_model)
    b = segment_cell(rgb, model=trained_synthetic_model)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_sixteen_bit_and_float_are_stretched(trained_synthetic_model, one_cell):
    rgb = one_cell[0]
    img16 = rgb.astype(np.uint16) * 200
    result = segment_cell(img16, model=trained_synthetic_model)
    assert result.cell_found and any("uint16" in w for w in result.warnings)
    converted, _ = to_rgb_uint8(img16)
    assert converted.dtype == np.uint8 and converted.max() == 255


def test_float_with_nan_is_repaired_and_reported(trained_synthetic_model, one_cell):
    img = one_cell[0].astype(np.float32) / 255
    img[5:8, 5:8] = np.nan
    img[0, 0] = np.inf
    result = segment_cell(img, model=trained_synthetic_model)
    assert result.cell_found
    assert any("NaN/inf" in w for w in result.warnings)
    with pytest.raises(ImageError, match="every pixel is NaN"):
        to_rgb_uint8(np.full((5, 5), np.nan))


def test_grey_image_is_accepted(trained_synthetic_model, one_cell):
    grey = one_cell[0].mean(-1).astype(np.uint8)
    assert segment_cell(grey, model=trained_synthetic_model).labels.shape == grey.shape


@pytest.mark.parametrize("shape", [(5, 64, 64), (5, 64, 64, 3), (64, 64, 5)])
def test_stacks_and_odd_shapes_are_refused_with_the_shape(trained_synthetic_model, shape):
    with pytest.raises(ImageError, match=r"shape .* is not a single 2D image"):
        segment_cell(np.zeros(shape, np.uint8), model=trained_synthetic_model)


def test_channel_first_rgb_gets_a_hint():
    with pytest.raises(ImageError, match="transpose"):
        to_rgb_uint8(np.zeros((3, 40, 50), np.uint8))


def test_unreadable_files_are_named(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: file is empty"):
        read_image(empty)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="junk.png: cannot be read as an image"):
        read_image(junk)
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_sixteen_bit_or_float_copies_of_an_eight_bit_image_are_not_stretched(one_cell):
    """A uint16 or float copy of an 8-bit image keeps its colours (issue 26: a stretch changed 5 of
    15 verdicts); other ranges are still stretched, with a note."""
    rgb = one_cell[0]
    for copy in (rgb.astype(np.uint16), rgb.astype(np.float32), rgb.astype(np.float64) / 255.0):
        converted, notes = to_rgb_uint8(copy)
        np.testing.assert_array_equal(converted, rgb)
        assert notes and "stretched" not in notes[0]
    converted, notes = to_rgb_uint8(rgb.astype(np.uint16) * 200)
    assert converted.max() == 255 and "stretched" in notes[0]
