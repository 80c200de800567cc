"""Learning from the user's corrections: fine-tuning the self-trained segmenter on corrected cells."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from napari_cervseg.cli import main
from napari_cervseg.io.images import write_png_atomic
from napari_cervseg.measure.scores import segmentation_scores
from napari_cervseg.segment.student import bundled_segmenters, load_segmenter
from napari_cervseg.workflows.corrections import (
    CorrectionConfig,
    CorrectionError,
    cells_from_labels,
    check_correction,
    learn_from_corrections,
    read_corrections_folder,
)
from napari_cervseg.workflows.selftrain import TrainingCancelled


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scores(seg, cells):
    s = [segmentation_scores(seg.predict(rgb), truth) for rgb, truth, _ in cells]
    return np.mean([x["nucleus"]["dice"] for x in s]), np.mean([x["cytoplasm"]["dice"] for x in s])


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_fine_tuning_on_corrected_cells_improves_other_cells(tmp_path, synthetic_cells):
    bundled = bundled_segmenters()["default"]
    before = (_sha(bundled), _sha(bundled.with_suffix(".json")))
    train, held_out = synthetic_cells[:6], synthetic_cells[6:]
    stages = []
    path = learn_from_corrections([c[0] for c in train], [c[1] for c in train], tmp_path / "mine",
                                  config=CorrectionConfig(steps=20, seed=0),
                                  sources=[f"synthetic {i}" for i in range(6)],
                                  progress=lambda stage, fraction: stages.append((stage, fraction)))
    assert path == (tmp_path / "mine.safetensors").resolve() and path.exists()
    base_n, base_c = _scores(load_segmenter("default"), held_out)
    n, c = _scores(load_segmenter(path), held_out)
    # the bundled segmenter learnt Herlev cells from pseudo-labels; on these synthetic cells its
    # cytoplasm Dice is 0.898 (nucleus 0.992). The default recipe cut to 20 steps on 6 corrected
    # cells, seeds 0 / 1 / 2 (one thread): cytoplasm 0.987 / 0.988 / 0.970, nucleus 0.990 / 0.980 /
    # 0.988; the bounds leave margin below the lowest
    assert c > base_c + 0.03, (base_c, c)
    assert n > base_n - 0.05, (base_n, n)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["supervision"].startswith("the user's own corrected labels")
    assert card["corrected_cells"] == 6 and card["corrected_sources"][0] == "synthetic 0"
    assert card["base_segmenter"].endswith("default.safetensors") and card["correction_config"]["steps"] == 20
    assert stages[-1] == ("written", 1.0) and any("step 20 of 20" in s for s, _ in stages)
    assert (_sha(bundled), _sha(bundled.with_suffix(".json"))) == before  # the bundled one is untouched


def test_fine_tuning_starts_from_the_base_weights(tmp_path, synthetic_cells):
    cells = synthetic_cells[:2]
    path = learn_from_corrections([c[0] for c in cells], [c[1] for c in cells], tmp_path / "tiny.safetensors",
                                  config=CorrectionConfig(steps=1, lr=1e-7, crop=0, freeze_bn=True))
    base, tuned = load_segmenter("default").net.state_dict(), load_segmenter(path).net.state_dict()
    first = next(k for k in base if k.endswith("weight"))
    assert np.allclose(base[first].numpy(), tuned[first].numpy(), atol=1e-5)  # a fresh net would differ by ~0.1


def test_nothing_is_overwritten_and_cancel_writes_nothing(tmp_path, synthetic_cells):
    images, labels = [synthetic_cells[0][0]], [synthetic_cells[0][1]]
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"the user's file")
    with pytest.raises(CorrectionError, match="taken.safetensors: exists and is not overwritten"):
        learn_from_corrections(images, labels, taken, config=CorrectionConfig(steps=1))
    assert taken.read_bytes() == b"the user's file"
    card_only = tmp_path / "card.json"
    card_only.write_text("{}")
    with pytest.raises(CorrectionError, match="card.json: exists"):
        learn_from_corrections(images, labels, tmp_path / "card.safetensors", config=CorrectionConfig(steps=1))
    bundled = bundled_segmenters()["default"]
    with pytest.raises(CorrectionError, match="bundled segmenters, which are never replaced"):
        learn_from_corrections(images, labels, bundled.with_name("mine.safetensors"), config=CorrectionConfig(steps=1))
    with pytest.raises(TrainingCancelled):
        learn_from_corrections(images, labels, tmp_path / "cancelled", config=CorrectionConfig(steps=5),
                               should_stop=lambda: True)
    assert not (tmp_path / "cancelled.safetensors").exists() and not (tmp_path / "cancelled.json").exists()


def test_bad_corrections_are_explained(one_cell):
    rgb, truth, _ = one_cell
    with pytest.raises(CorrectionError, match="labels are 10 x 10 px but the image is"):
        check_correction(rgb, np.ones((10, 10), np.uint8))
    bad = truth.copy()
    bad[0, 0] = 7
    with pytest.raises(CorrectionError, match=r"label values \[7\] are not 0"):
        check_correction(rgb, bad)
    with pytest.raises(CorrectionError, match="no nucleus"):
        check_correction(rgb, np.where(truth == 2, 1, truth))
    with pytest.raises(CorrectionError, match="no cytoplasm"):
        check_correction(rgb, np.where(truth == 1, 2, truth))
    with pytest.raises(CorrectionError, match="no corrected cells given"):
        learn_from_corrections([], [], "x.safetensors")
    with pytest.raises(CorrectionError, match="1 images but 2 labels"):
        learn_from_corrections([rgb], [truth, truth], "x.safetensors")
    with pytest.raises(CorrectionError, match="base segmenter: segmenter 'nope' not found"):
        learn_from_corrections([rgb], [truth], "x.safetensors", base="nope")


def test_rectangles_make_one_cell_each_and_unpainted_ones_are_left_out(one_cell):
    rgb, truth, _ = one_cell
    h, w = truth.shape
    field = np.zeros((h, 2 * w, 3), np.uint8)
    field[:, :w] = rgb
    labels = np.zeros((h, 2 * w), np.uint8)
    labels[:, :w] = truth
    skipped = []
    cells = cells_from_labels(field, labels, "field", boxes=[(0, 0, h, w), (0, w, h, 2 * w)], skipped=skipped)
    assert len(cells) == 1 and cells[0].labels.shape == truth.shape and "columns 0-" in cells[0].source
    assert len(skipped) == 1 and "no nucleus" in skipped[0][1]


def test_corrected_labels_of_a_segment_folder_train_and_untouched_ones_do_not(tmp_path, synthetic_cells,
                                                                               model_file, capsys):
    inputs = tmp_path / "cells"
    inputs.mkdir()
    for i in range(3):
        _write(inputs / f"cell{i}.png", synthetic_cells[i][0])
    out = tmp_path / "out"
    assert main(["segment", str(inputs), "--out", str(out), "--model", model_file, "--method", "gradcam++",
                 "--workers", "1", "--quiet"]) == 0
    # nothing corrected yet
    assert main(["self-train", "--corrections", str(out), "--out", str(tmp_path / "none.safetensors")]) == 2
    assert "no corrected labels found" in capsys.readouterr().err
    # cell0: saved by another program (no mark); cell1: saved through the plugin's writer (marked,
    # but not the pixels the run wrote); cell2: untouched
    cv2.imwrite(str(out / "cell0_labels.png"), synthetic_cells[0][1])
    write_png_atomic(out / "cell1_labels.png", synthetic_cells[1][1], replace_foreign=True)
    # a re-run keeps the corrections (and the journal still knows what the first run wrote)
    assert main(["segment", str(inputs), "--out", str(out), "--model", model_file, "--method", "gradcam++",
                 "--workers", "1", "--quiet"]) == 0
    skipped = []
    cells = read_corrections_folder(out, skipped)
    assert [c.source.split(" <- ")[0] for c in cells] == ["cell0_labels.png", "cell1_labels.png"]
    np.testing.assert_array_equal(cells[1].labels, synthetic_cells[1][1])
    np.testing.assert_array_equal(cells[0].image, synthetic_cells[0][0])
    assert [s for s, _ in skipped] == ["cell2"] and "untouched" in skipped[0][1]

    new = tmp_path / "lab.safetensors"
    assert main(["self-train", "--corrections", str(out), "--out", str(new), "--steps", "2", "--quiet"]) == 0
    assert "2 corrected cell(s)" in capsys.readouterr().out
    card = json.loads(new.with_suffix(".json").read_text())
    assert card["corrected_cells"] == 2 and "cell1_labels.png <- " in card["corrected_sources"][1]
    # the new segmenter is used by segment --method self-trained --segmenter
    again = tmp_path / "again"
    assert main(["segment", str(inputs / "cell2.png"), "--out", str(again), "--model", model_file,
                 "--method", "self-trained", "--segmenter", str(new), "--quiet"]) == 0
    assert (again / "cell2_labels.png").exists()
    # never over an existing file
    assert main(["self-train", "--corrections", str(out), "--out", str(new), "--steps", "2", "--quiet"]) == 2
    assert "exists and is not overwritten" in capsys.readouterr().err


def test_self_train_command_line_errors(tmp_path, capsys):
    assert main(["self-train", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "give --data" in capsys.readouterr().err
    assert main(["self-train", "--corrections", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["self-train", "--corrections", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no .cervseg-journal.jsonl journal" in capsys.readouterr().err
    assert main(["self-train", "--corrections", str(tmp_path), "--epochs", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--epochs is for the pseudo-label route" in capsys.readouterr().err
    assert main(["self-train", "--corrections", str(tmp_path), "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--steps 0" in capsys.readouterr().err
    assert main(["self-train", "--data", str(tmp_path), "--steps", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--steps is for --corrections" in capsys.readouterr().err
