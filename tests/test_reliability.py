"""Issue 26: segmenter cards are checked like classifier cards, output paths that are folders or
devices are refused, and a field's instance labels save from napari whatever their count."""

import json
import shutil

import numpy as np
import pytest

from napari_cervseg.segment.student import SegmenterError, bundled_segmenters, load_segmenter
from napari_cervseg.workflows.corrections import CorrectionError, check_output_path


@pytest.fixture()
def segmenter_copy(tmp_path):
    source = bundled_segmenters()["default"]
    path = tmp_path / "seg.safetensors"
    shutil.copy(source, path)
    shutil.copy(source.with_suffix(".json"), path.with_suffix(".json"))
    return path


@pytest.mark.parametrize("card, words", [
    ("{not json", "not a readable JSON card"),
    ("[1, 2]", "JSON object"),
    (None, "widths must be"),
    ("huge", "widths must be"),
    ("size", "input_size"),
])
def test_a_bad_segmenter_card_is_refused_naming_the_file(segmenter_copy, card, words):
    card_path = segmenter_copy.with_suffix(".json")
    good = json.loads(card_path.read_text())
    if card is None:
        card = json.dumps({**good, "widths": ["a", "b"]})
    elif card == "huge":
        card = json.dumps({**good, "widths": [16, 32, 64, 1000000]})
    elif card == "size":
        card = json.dumps({**good, "input_size": "big"})
    card_path.write_text(card)
    with pytest.raises(SegmenterError, match=words) as info:
        load_segmenter(segmenter_copy)
    assert "seg.json" in str(info.value)


def test_a_folder_or_a_device_is_not_an_output_file(tmp_path):
    with pytest.raises(CorrectionError, match="folder or not a regular file"):
        check_output_path(tmp_path)
    with pytest.raises(CorrectionError, match="folder or not a regular file"):
        check_output_path("/dev/null")
    assert check_output_path(tmp_path / "new").name == "new.safetensors"


def test_instance_labels_with_more_than_255_cells_save_as_sixteen_bit(tmp_path):
    import cv2

    from napari_cervseg.plugin.writer import write_labels

    cells = np.arange(300 * 4, dtype=np.int32).reshape(30, 40) % 300
    [written] = write_labels(str(tmp_path / "field_cells.png"), cells, {"name": "field cells"})
    back = cv2.imread(written, cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back, cells)
    small = np.array([[0, 1], [2, 1]], np.int32)
    [written] = write_labels(str(tmp_path / "labels.png"), small, {"name": "labels"})
    assert cv2.imread(written, cv2.IMREAD_UNCHANGED).dtype == np.uint8
    with pytest.raises(ValueError, match="0-65535"):
        write_labels(str(tmp_path / "x.png"), np.full((4, 4), 70000, np.int32), {"name": "x"})
