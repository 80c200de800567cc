"""One progress and cancel protocol, and the request checks every entry point gets (issue 24, item 5)."""

import cv2
import numpy as np
import pytest

from napari_cervseg.classify import ModelError
from napari_cervseg.segment.settings import SegmentationError
from napari_cervseg.workflows.batch import BatchConfig, expand_inputs, run_batch, segment_frames


@pytest.fixture()
def cell_folder(tmp_path, synthetic_cells):
    folder = tmp_path / "cells"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"cell{i}.png"), cv2.cvtColor(synthetic_cells[i][0], cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.parametrize(("config", "error", "words"), [
    ({"pixel_size": -1.0}, ValueError, "pixel_size"),
    ({"max_pixels": -5}, ValueError, "max_pixels"),
    ({"method": "gradcam++", "model": None}, SegmentationError, "pass model="),
    ({"method": "no-such-method"}, SegmentationError, "choose one of"),
    ({"options": {"dilation": -3}}, SegmentationError, "dilation must be"),  # another method's option
    ({"options": {"operating_point": "sometimes"}}, ModelError, "no operating point 'sometimes'"),
    ({"target": "malignant"}, ModelError, "unknown class 'malignant'"),
    ({"field_mode": "maybe"}, ValueError, "field_mode"),
    ({"finder": "psychic"}, ValueError, "unknown finder"),
])
def test_a_batch_that_cannot_run_is_refused_before_a_file_is_touched(tmp_path, cell_folder, model_file, config,
                                                                     error, words):
    out = tmp_path / "out"
    with pytest.raises(error, match=words):
        run_batch(expand_inputs([cell_folder]), out, BatchConfig(**{"model": model_file, **config}))
    assert not out.exists()  # the library refuses, whoever calls it (not only the CLI)


def test_a_batch_reports_progress_as_stage_and_fraction_and_stops_when_asked(tmp_path, cell_folder, model_file):
    seen, records = [], []
    items = list(expand_inputs([cell_folder]))
    summary = run_batch(items, tmp_path / "out", BatchConfig(model=model_file), progress=lambda s, f: seen.append((s, f)),
                        should_stop=lambda: len(records) >= 2, total=len(items), on_record=records.append)
    assert all(isinstance(s, str) and 0.0 <= f <= 1.0 for s, f in seen)
    assert [f for _, f in seen] == sorted(f for _, f in seen)
    assert seen[0][0].startswith("1 of 3 images")
    assert summary["cancelled"] and len(records) == 2 and seen[-1][1] == pytest.approx(2 / 3)


def test_segment_frames_stops_between_frames(model_file):
    frames = [(f"f{i}", np.full((32, 32, 3), 200, np.uint8)) for i in range(4)]
    done = []
    for name, _, _ in segment_frames(frames, BatchConfig(model=None, method="colour-baseline"),
                                     should_stop=lambda: len(done) >= 2):
        done.append(name)
    assert done == ["f0", "f1"]
