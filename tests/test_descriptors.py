import math

import numpy as np
import pytest

from napari_cervseg import measure


def ellipse_mask(shape, centre, axes, angle_deg):
    """Pixel centres inside the ellipse: its pixel count estimates pi*a*b without bias."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    t = math.radians(angle_deg)
    dx, dy = xx - centre[0], yy - centre[1]
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1


def drawn_cell(a_cell=40, b_cell=28, a_nuc=12, b_nuc=9):
    shape = (120, 140)
    cell = ellipse_mask(shape, (70, 60), (a_cell, b_cell), 20)
    nuc = ellipse_mask(shape, (72, 58), (a_nuc, b_nuc), 70)
    labels = np.zeros(shape, np.uint8)
    labels[cell] = 1
    labels[nuc] = 2
    return labels


def test_areas_and_ratios_match_the_drawn_ellipses():
    row = measure(drawn_cell())
    nucleus, cell = math.pi * 12 * 9, math.pi * 40 * 28
    assert row["nucleus_area"] == pytest.approx(nucleus, rel=0.04)
    assert row["cell_area"] == pytest.approx(cell, rel=0.02)
    assert row["cytoplasm_area"] == pytest.approx(cell - nucleus, rel=0.03)
    assert row["nc_ratio"] == pytest.approx(nucleus / (cell - nucleus), rel=0.06)
    assert row["nucleus_cell_ratio"] == pytest.approx(nucleus / cell, rel=0.06)
    # shape: axes, eccentricity sqrt(1 - b^2/a^2), near-ellipse perimeter (Ramanujan)
    assert row["cell_major_axis"] == pytest.approx(80, rel=0.03)
    assert row["cell_minor_axis"] == pytest.approx(56, rel=0.03)
    assert row["cell_eccentricity"] == pytest.approx(math.sqrt(1 - (28 / 40) ** 2), abs=0.03)
    a, b = 40, 28
    ramanujan = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    assert row["cell_perimeter"] == pytest.approx(ramanujan, rel=0.04)
    assert row["cell_solidity"] > 0.97
    assert 0.9 < row["cell_circularity"] <= 1.0
    assert row["nucleus_equivalent_diameter"] == pytest.approx(2 * math.sqrt(12 * 9), rel=0.03)


def test_pixel_size_gives_micrometres():
    row = measure(drawn_cell(), pixel_size=0.5)
    assert row["nucleus_area_um2"] == pytest.approx(row["nucleus_area"] * 0.25)
    assert row["cell_perimeter_um"] == pytest.approx(row["cell_perimeter"] * 0.5)
    with pytest.raises(ValueError, match="pixel_size"):
        measure(drawn_cell(), pixel_size=0)


def test_mean_intensities_per_region():
    labels = drawn_cell()
    image = np.where(labels == 2, 50, np.where(labels == 1, 150, 230)).astype(np.uint8)
    row = measure(labels, image)
    assert row["nucleus_mean_intensity"] == pytest.approx(50, abs=0.5)
    assert row["cytoplasm_mean_intensity"] == pytest.approx(150, abs=0.5)


def test_hand_correction_changes_the_numbers():
    labels = drawn_cell()
    before = measure(labels)
    labels[58:62, 40:50] = 2  # a user paints more nucleus
    after = measure(labels)
    assert after["nucleus_area"] > before["nucleus_area"]
    assert after["cell_area"] == before["cell_area"]


def test_empty_labels_and_bad_values():
    row = measure(np.zeros((10, 10), np.uint8))
    assert row["nucleus_area"] == 0 and math.isnan(row["nc_ratio"])
    with pytest.raises(ValueError, match="found values"):
        measure(np.full((5, 5), 7, np.uint8))
    with pytest.raises(ValueError, match="2D"):
        measure(np.zeros((2, 5, 5), np.uint8))
