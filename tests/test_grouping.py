import numpy as np
import pytest

from napari_cervseg.segment.grouping import (
    GROUPINGS,
    GroupingError,
    group,
    intermeans_thresholds,
    kmeans,
    log_scale,
)


def three_level_heatmap(seed=0, nucleus_radius=12, cell_radius=30):
    """Background 0.1, 'cytoplasm' ring 0.5, 'nucleus' disc 0.9, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:80, :90]
    r = np.hypot(yy - 40, xx - 45)
    heat = np.where(r < nucleus_radius, 0.9, np.where(r < cell_radius, 0.5, 0.1)) + rng.normal(0, 0.04, r.shape)
    truth = np.where(r < nucleus_radius, 2, np.where(r < cell_radius, 1, 0))
    return np.clip(heat, 0, 1).astype(np.float32), truth


# inter-means starts at the quartiles: with a nucleus of 6 % of the pixels both start thresholds
# fall below it (the paper's algorithm, kept as specified), so it is checked on the balanced map only
CASES = [(m, (20, 36)) for m in GROUPINGS] + [(m, (12, 30)) for m in GROUPINGS if m != "intermeans"]


@pytest.mark.parametrize(("method", "radii"), CASES)
def test_each_grouping_orders_regions_by_relevance(method, radii):
    heat, truth = three_level_heatmap(0, *radii)
    groups = group(heat, 3, method)
    assert groups.shape == heat.shape and groups.dtype == np.uint8
    assert set(np.unique(groups)) <= {0, 1, 2}
    # highest relevance is group 2, lowest group 0, and most pixels land where they belong
    assert (groups == truth).mean() > 0.95
    means = [heat[groups == g].mean() for g in range(3)]
    assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("method", GROUPINGS)
def test_two_group_variant_separates_top_region(method):
    heat, truth = three_level_heatmap(1, 20, 36)
    # two groups of a nucleus-vs-rest map
    heat2 = np.where(truth == 2, heat, heat * 0.3)
    groups = group(heat2, 2, method)
    assert set(np.unique(groups)) <= {0, 1}
    assert ((groups == 1) == (truth == 2)).mean() > 0.95


def test_grouping_of_constant_or_unknown():
    assert not group(np.full((10, 10), 0.3), 3, "gmm").any()
    with pytest.raises(GroupingError, match="unknown grouping"):
        group(np.zeros((4, 4)), 3, "otsu")
    with pytest.raises(GroupingError, match="thresholds"):
        group(np.random.rand(5, 5), 3, "threshold", thresholds=(0.5,))


def test_log_scale_is_formula_8():
    r = np.array([0.0, 0.001, 0.1, 1.0])
    expected = np.log(r * 1000 + 1) / np.log(1000)
    np.testing.assert_allclose(log_scale(r), expected, rtol=1e-6)
    # compresses the top: the gap between 0.1 and 1 shrinks relative to the raw values
    assert log_scale(r)[3] - log_scale(r)[2] < 0.9


def test_intermeans_starts_at_quartiles_and_converges_between_modes():
    values = np.concatenate([np.full(100, 0.1), np.full(100, 0.5), np.full(100, 0.9)])
    t = intermeans_thresholds(values, 3)
    assert 0.1 < t[0] < 0.5 < t[1] < 0.9


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(c, 0.05, (200, 3)) for c in (0.0, 1.0, 2.0)])
    centres, assign = kmeans(pts, 3)
    assert sorted(np.round(centres[:, 0]).tolist()) == [0.0, 1.0, 2.0]
    assert len(np.unique(assign[:200])) == 1
