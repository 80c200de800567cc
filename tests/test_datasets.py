"""Readers of the development data layouts."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_cervseg.io.datasets import DatasetError, read_isbi_cell_crops


def _isbi_folder(root):
    (root / "images").mkdir(parents=True)
    (root / "cells").mkdir()
    field = np.full((60, 80, 3), 200, np.uint8)
    pages = np.zeros((2, 60, 80), np.uint8)
    pages[0, 10:30, 10:40] = 1  # a complete cell with a nucleus
    pages[0, 15:22, 20:28] = 2
    pages[1, 0:20, 50:80] = 1  # a cell cut by the border
    Image.fromarray(field).save(root / "images" / "f1.png")
    tifffile.imwrite(root / "cells" / "f1.tif", pages)
    return root


def test_isbi_crops_are_tight_around_each_cell_with_its_own_mask(tmp_path):
    root = _isbi_folder(tmp_path / "isbi")
    crops = read_isbi_cell_crops(root)
    assert [c.name for c in crops] == ["f1-1"]  # the border cell is left out
    crop = crops[0]
    assert crop.image.shape[:2] == crop.mask.shape
    assert crop.box == (8, 8, 32, 42)  # 2 px (the minimum margin) around rows 10-29, cols 10-39
    assert (crop.mask == 2).sum() == 7 * 8 and (crop.mask > 0).sum() == 20 * 30
    assert [c.name for c in read_isbi_cell_crops(root, complete_only=False)] == ["f1-1", "f1-2"]


def test_isbi_reader_names_the_layout_it_expects(tmp_path):
    with pytest.raises(DatasetError, match="images/<field>.png"):
        read_isbi_cell_crops(tmp_path)
