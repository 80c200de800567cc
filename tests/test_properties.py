"""Property-based tests (hypothesis): random inputs never crash the grouping, the GrabCut wrapper,
the clean-up or the descriptors, and their outputs keep the label contract."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_cervseg import measure
from napari_cervseg.segment.grouping import GROUPINGS, group
from napari_cervseg.segment.refine import combine, grabcut, seed_map

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(shape=shapes, data=st.data(), method=st.sampled_from(GROUPINGS), n=st.sampled_from([2, 3]))
def test_grouping_never_crashes_and_stays_in_range(shape, data, method, n):
    heat = data.draw(arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    groups = group(heat, n, method)
    assert groups.shape == heat.shape and groups.dtype == np.uint8
    assert groups.max() < n
    if np.ptp(heat) > 1e-6 and len(np.unique(groups)) > 1:  # higher groups hold higher relevance
        means = [heat[groups == g].mean() for g in np.unique(groups)]
        assert all(a <= b + 1e-6 for a, b in zip(means, means[1:], strict=False))


@SETTINGS
@given(shape=shapes, data=st.data())
def test_grabcut_and_combine_keep_the_label_contract(shape, data):
    rgb = data.draw(arrays(np.uint8, shape + (3,)))
    fg = data.draw(arrays(bool, shape))
    sure = data.draw(arrays(bool, shape)) & fg
    nucleus = grabcut(rgb, seed_map(shape, fg, sure_fg=sure), iterations=2)
    cell = grabcut(rgb, seed_map(shape, fg | nucleus), iterations=2)
    labels = combine(nucleus, cell)
    assert labels.shape == shape and set(np.unique(labels)) <= {0, 1, 2}
    nuc = labels == 2
    assert not (nuc & (labels == 0)).any()  # the nucleus is inside the cell by construction


@SETTINGS
@given(labels=arrays(np.uint8, shapes, elements=st.integers(0, 2)), pixel_size=st.floats(0.01, 10))
def test_descriptor_areas_add_up(labels, pixel_size):
    row = measure(labels, pixel_size=pixel_size)
    assert row["nucleus_area"] + row["cytoplasm_area"] == row["cell_area"] == int((labels > 0).sum())
    assert row["cell_area_um2"] == np.float64(row["cell_area"]) * pixel_size * pixel_size
    if row["cytoplasm_area"]:
        assert row["nc_ratio"] == row["nucleus_area"] / row["cytoplasm_area"]
