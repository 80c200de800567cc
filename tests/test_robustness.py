"""Fast representative cases of the robustness suite (issue 17; the full generator and runner is
``benchmarks/bench_robustness.py``): hostile files, odd arrays, odd options, bad model cards,
link loops, concurrent runs, full disks. Each runs with the colour baseline (no model) or on tiny
arrays, so the file runs in seconds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_cervseg.cli import main
from napari_cervseg.workflows.batch import BatchConfig, expand_inputs, run_batch

BASELINE = ["--model", "none", "--method", "colour-baseline", "--quiet", "--workers", "1"]


def _cell(seed=0, shape=(64, 72)):
    rng = np.random.default_rng(seed)
    img = np.full(shape + (3,), 225, np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] // 2, shape[1] // 2
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < 26**2] = (180, 150, 200)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < 9**2] = (60, 40, 120)
    return np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# A2: link loops


def test_a_symlink_loop_under_a_recursive_glob_ends_and_visits_each_file_once(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    (d / "sub").symlink_to(".")
    (d / "up").symlink_to("..")
    (d / "real").mkdir()
    _write(d / "real" / "b.png", _cell(1))
    code = ("import sys; from napari_cervseg.workflows.batch import expand_inputs;"
            f"print(len(list(expand_inputs([{str(d) + '/**/*.png'!r}]))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip() == "2", done.stderr
    items = list(expand_inputs([str(d / "**" / "*.png"), str(d / "*" / "*.png"), str(d)]))
    assert sorted(Path(i.source).name for i in items) == ["a.png", "b.png"]


def test_only_sub_link_gives_one_input_not_41(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    (d / "sub").symlink_to(".")
    out = tmp_path / "o"
    assert main(["segment", str(d / "**" / "*.png"), "--out", str(out), *BASELINE]) == 0
    assert len(list(out.glob("*_labels.png"))) == 1


# ---------------------------------------------------------------------------------------------
# A4: --out is the input folder


def test_a_users_file_named_like_an_output_is_never_overwritten_and_is_reported(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    _write(d / "a_overlay.png", _cell(5))  # the user's own image
    before = _digest(d / "a_overlay.png")
    rc = main(["segment", str(d), "--out", str(d), *BASELINE])
    err = capsys.readouterr().err
    assert _digest(d / "a_overlay.png") == before
    assert "skipped: " in err and "a_overlay.png" in err and "named like an output" in err
    assert rc == 1 and "not written by napari-cervseg" in err
    assert not (d / "a_labels.png").exists()
    # a re-run on its own outputs neither treats them as inputs nor reports them
    (d / "a_overlay.png").rename(tmp_path / "users_overlay.png")
    assert main(["segment", str(d), "--out", str(d), *BASELINE]) == 0
    assert main(["segment", str(d), "--out", str(d), *BASELINE, "--overwrite"]) == 0
    assert "skipped" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# A3: two runs on one --out; A11: temporary files of a killed run


def test_a_second_run_on_a_folder_in_use_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    import json
    import socket

    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".cervseg.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                       "started": "now"}))
        assert main(["segment", str(d), "--out", str(out), *BASELINE]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "in use by another cervseg run" in err and f"pid {holder.pid}" in err
        assert not (out / "a_labels.png").exists() and not (out / "summary.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the run goes ahead, then removes the lock
    assert main(["segment", str(d), "--out", str(out), *BASELINE]) == 0
    assert (out / "a_labels.png").exists() and not (out / ".cervseg.lock").exists()


def test_the_lock_is_removed_when_a_run_fails(tmp_path, monkeypatch):
    from napari_cervseg.workflows import batch

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(batch, "_run_batch", boom)
    with pytest.raises(RuntimeError):
        run_batch([], tmp_path / "o", BatchConfig(model=None, method="colour-baseline"))
    assert not (tmp_path / "o" / ".cervseg.lock").exists()


def test_kept_rows_keep_their_class_from_the_journal(tmp_path):
    import json

    from napari_cervseg.workflows.batch import _Journal

    path = tmp_path / ".cervseg-journal.jsonl"
    first = {"image": "a", "row": {"image": "a", "predicted_class": "abnormal", "probability": 0.9,
                                   "method": "gradcam++", "cell_found": True, "nucleus_area": 5}}
    kept = {"image": "a", "status": "kept", "row": {"image": "a", "status": "kept existing labels",
                                                    "nucleus_area": 6}}
    path.write_text(json.dumps(first) + "\n" + json.dumps(kept) + "\n")
    row = _Journal(path).read()["a"]
    assert row["predicted_class"] == "abnormal" and row["probability"] == 0.9 and row["nucleus_area"] == 6


def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    out = tmp_path / "o"
    out.mkdir()
    left = [".a_heatmap.png.tmp123.png", ".a_labels.png.tmp77-991.png", ".descriptors.csv.tmp",
            ".summary.json.tmp"]
    for name in left:
        (out / name).write_bytes(b"x")
    (out / ".notes.tmp").write_text("the user's")
    summary = run_batch(expand_inputs([d]), out, BatchConfig(model=None, method="colour-baseline"))
    assert summary["removed_temporary_files"] == 4
    assert not any((out / name).exists() for name in left) and (out / ".notes.tmp").exists()


# ---------------------------------------------------------------------------------------------
# A5-A8, A12: odd image files


def test_a_planar_rgb_tiff_is_one_colour_image_not_three_grey_cells(tmp_path):
    import tifffile

    from napari_cervseg.io.images import image_info, read_image

    rgb = _cell()
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    assert image_info(tmp_path / "planar.tif") == (1, rgb.shape[:2])
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif", roi="3,4,10,12"), rgb[4:16, 3:13])
    assert len(list(expand_inputs([tmp_path / "planar.tif"]))) == 1


def test_a_five_channel_tiff_is_refused_by_name(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "five.tif", np.zeros((127, 121, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    out = tmp_path / "o"
    assert main(["segment", str(tmp_path / "five.tif"), "--out", str(out), *BASELINE]) == 1
    err = capsys.readouterr().err
    assert "5 channels per pixel" in err and err.count("failed:") == 1
    assert not list(out.glob("*_labels.png"))


def test_a_cmyk_jpeg_is_read_in_its_true_colours(tmp_path):
    from PIL import Image

    from napari_cervseg.io.images import read_image, to_rgb_uint8

    rgb = _cell()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    for roi in (None, "0,0,40,30"):
        got, _ = to_rgb_uint8(read_image(tmp_path / "cmyk.jpg", roi=roi))
        want = rgb if roi is None else rgb[:30, :40]
        assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 6


def test_grey_plus_alpha_is_accepted_and_many_channels_get_the_right_hint(tmp_path):
    from PIL import Image

    from napari_cervseg.io.images import ImageError, read_image, to_rgb_uint8

    grey = _cell()[..., 0]
    Image.fromarray(grey).convert("LA").save(tmp_path / "la.png")
    rgb, _ = to_rgb_uint8(read_image(tmp_path / "la.png"))
    np.testing.assert_array_equal(rgb[..., 0], grey)
    with pytest.raises(ImageError, match="channels per pixel") as info:
        to_rgb_uint8(np.zeros((64, 64, 5), np.uint8))
    assert "stack" not in str(info.value)


def test_roi_keeps_the_decompression_bomb_guard_for_png(tmp_path, capsys):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = tmp_path / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 90001 * 100))
                     + chunk(b"IEND", b""))
    from napari_cervseg.io import images

    def must_not_decode(*a, **k):
        raise AssertionError("decoded")

    from PIL import Image

    real_crop = Image.Image.crop
    Image.Image.crop = must_not_decode
    try:
        with pytest.raises(images.ImageError, match="whole decoded image"):
            images.read_image(bomb, roi="0,0,100,100", max_pixels=images.MAX_PIXELS)
        assert main(["segment", str(bomb), "--roi", "0,0,100,100", "--out", str(tmp_path / "o"), *BASELINE]) == 1
    finally:
        Image.Image.crop = real_crop
    assert "whole decoded image" in capsys.readouterr().err


def test_a_fifo_as_input_or_model_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    (tmp_path / "model.json").write_text('{"architecture": "compact"}')
    img_fifo = tmp_path / "cell.png"
    os.mkfifo(img_fifo)
    code = ("import sys; from napari_cervseg.cli import main;"
            f"sys.exit(main(['segment', {str(img_fifo)!r}, '--out', {str(tmp_path / 'o')!r}, '--quiet',"
            f" '--model', {str(fifo)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 2 and "FIFO" in done.stderr and "Traceback" not in done.stderr
    code = code.replace(f"'--model', {str(fifo)!r}", "'--model', 'none', '--method', 'colour-baseline'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 1 and "FIFO" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# A9: options; A10: model cards


@pytest.mark.parametrize("option", [["--dilation", "1e9"], ["--dilation", "1e9", "--workers", "2"],
                                    ["--device", "bogus"], ["--device", "cuda:99"], ["--pixel-size", "inf"],
                                    ["--pixel-size", "-1"], ["--max-pixels", "-5"], ["--smooth", "nan"],
                                    ["--work-size", "100000"], ["--out", ""]])
def test_bad_option_values_are_refused_up_front(tmp_path, capsys, option):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    out = tmp_path / "o"
    before = sorted(os.listdir("."))
    assert main(["segment", str(d), "--out", str(out), "--quiet", *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and option[0].lstrip("-").replace("-", "_")[:5] in err.replace("-", "_")
    assert not out.exists() and sorted(os.listdir(".")) == before  # nothing written anywhere


def _tiny_model(folder):
    import torch

    from napari_cervseg.classify import save_model
    from napari_cervseg.classify.networks import CompactCNN

    torch.manual_seed(0)
    return save_model(CompactCNN(widths=(8, 16, 16, 32)), folder / "m.safetensors",
                      {"architecture": "compact", "arch_kwargs": {"widths": [8, 16, 16, 32]},
                       "preprocess": {"input_size": 64}, "class_names": ["normal", "abnormal"]})


BAD_CARDS = {
    "architecture 5": {"architecture": 5},
    "architecture unknown": {"architecture": "resnet"},
    "arch_kwargs a string": {"arch_kwargs": "x"},
    "negative width": {"arch_kwargs": {"widths": [-1, 16, 16, 32]}},
    "huge width": {"arch_kwargs": {"widths": [10**9, 16, 16, 32]}},
    "widths a string": {"arch_kwargs": {"widths": "abc"}},
    "unknown kwarg": {"arch_kwargs": {"widths": [8, 16, 16, 32], "bogus": 1}},
    "negative input size": {"preprocess": {"input_size": -5}},
    "huge input size": {"preprocess": {"input_size": 10**6}},
    "top input size a string": {"input_size": "big"},
    "class_names a string": {"class_names": "ab"},
    "one class": {"class_names": ["a"]},
    "repeated class": {"class_names": ["a", "a"]},
    "std zero": {"preprocess": {"input_size": 64, "std": [0, 0, 0]}},
    "mean of two": {"preprocess": {"input_size": 64, "mean": [1, 2]}},
    "mean NaN": {"preprocess": {"input_size": 64, "mean": [float("nan"), 0.5, 0.5]}},
    "preprocess a string": {"preprocess": "x"},
    "even median": {"preprocess": {"input_size": 64, "median_ksize": 4}},
    "unknown equalise": {"preprocess": {"input_size": 64, "equalise": "bogus"}},
    "cam_layer a number": {"cam_layer": 7},
    "cam_layer unknown": {"cam_layer": "nope"},
    "threshold 5": {"operating_points": {"s": {"abnormal_threshold": 5}}},
    "operating point a list": {"operating_points": {"s": [1]}},
}


@pytest.mark.parametrize("name", sorted(BAD_CARDS))
def test_every_bad_model_card_is_a_model_error_naming_the_field(tmp_path, name):
    import json

    from napari_cervseg.classify import ModelError, load_model

    weights = _tiny_model(tmp_path)
    card = json.loads(weights.with_suffix(".json").read_text())
    change = BAD_CARDS[name]
    card.update(change)
    weights.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError) as info:
        load_model(str(weights))
    assert next(iter(change)) in str(info.value) and "card" in str(info.value)


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"architecture": "compact", "input_size": '
                                  + "9" * 5000 + "}", "[1, 2]", '{"architecture": "compact"', "\xff\xfe"])
def test_cards_that_are_not_json_objects_are_model_errors(tmp_path, text):
    from napari_cervseg.classify import ModelError, load_model

    weights = _tiny_model(tmp_path)
    weights.with_suffix(".json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelError, match="m.json"):
        load_model(str(weights))


def test_a_good_tiny_card_still_loads(tmp_path):
    from napari_cervseg.classify import load_model

    model = load_model(str(_tiny_model(tmp_path)))
    assert model.class_names == ("normal", "abnormal") and model.preprocess.input_size == 64


# ---------------------------------------------------------------------------------------------
# A13: measure()


def test_measure_refuses_fractional_labels_and_odd_pixel_sizes():
    from napari_cervseg.measure.descriptors import measure

    labels = np.zeros((20, 20))
    labels[5:10, 5:10] = 1.5
    with pytest.raises(ValueError, match="whole numbers"):
        measure(labels)
    labels[5:10, 5:10] = np.nan
    with pytest.raises(ValueError, match="whole numbers"):
        measure(labels)
    labels[5:10, 5:10] = 2.0
    assert measure(labels)["nucleus_area"] == 25
    for bad in (float("inf"), float("nan"), -1, 0, [0.2], "0.2", True):
        with pytest.raises(ValueError, match="pixel_size"):
            measure(labels.astype(np.uint8), pixel_size=bad)
    assert measure(labels.astype(np.uint8), pixel_size=np.float32(0.5))["nucleus_area_um2"] == 6.25


def test_two_separate_nuclei_are_not_measured_as_one_shape():
    from napari_cervseg.measure.descriptors import measure

    labels = np.zeros((120, 120), np.uint8)
    labels[10:110, 10:110] = 1
    labels[15:25, 15:25] = 2
    labels[95:105, 95:105] = 2
    row = measure(labels)
    assert row["nucleus_area"] == 200 and row["nucleus_regions"] == 2
    assert row["nucleus_major_axis"] < 15  # one 10 x 10 square, not the 141 px span of both
    assert "2 separate nucleus regions" in row["measure_notes"]


def test_kept_labels_saved_as_rgb_or_resized_are_measured_with_a_note(tmp_path):
    import csv

    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    _write(d / "b.png", _cell(1))
    out = tmp_path / "o"
    config = BatchConfig(model=None, method="colour-baseline")
    run_batch(expand_inputs([d]), out, config)
    first = {r["image"]: r for r in csv.DictReader((out / "descriptors.csv").open())}
    a = cv2.imread(str(out / "a_labels.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(out / "a_labels.png"), cv2.cvtColor(a, cv2.COLOR_GRAY2BGR))  # saved as RGB
    b = cv2.imread(str(out / "b_labels.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(out / "b_labels.png"), cv2.resize(b, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    summary = run_batch(expand_inputs([d]), out, config)
    rows = {r["image"]: r for r in csv.DictReader((out / "descriptors.csv").open())}
    assert not summary["failed"] and set(rows) == {"a", "b"}
    assert rows["a"]["nucleus_area"] == first["a"]["nucleus_area"] and "channels" in rows["a"]["measure_notes"]
    assert "resized labels" in rows["b"]["measure_notes"]
    assert rows["a"]["method"] == first["a"]["method"] == "colour-baseline"


def test_a_users_own_table_or_summary_in_out_is_never_replaced(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    for name, text in (("descriptors.csv", "patient,grade\n1,2\n"), ("summary.json", '{"my": "notes"}')):
        out = tmp_path / f"o_{name}"
        out.mkdir()
        (out / name).write_text(text)
        assert main(["segment", str(d), "--out", str(out), *BASELINE]) == 2
        assert "is not a cervseg" in capsys.readouterr().err and (out / name).read_text() == text
        assert not (out / "a_labels.png").exists()


def test_odd_api_arguments_are_image_errors():
    from napari_cervseg import segment_cell
    from napari_cervseg.io.images import ImageError

    with pytest.raises(ImageError, match="cannot be made into an array"):
        segment_cell([[1, 2], [3]], model=None, method="colour-baseline")
    with pytest.raises(ImageError, match="max_pixels must be"):
        segment_cell(_cell(), model=None, method="colour-baseline", max_pixels=-1)


def test_a_file_name_with_a_newline_is_reported_on_one_line(tmp_path, capsys):
    bad = tmp_path / "new\nline.png"
    _write(bad, _cell())
    assert main(["segment", str(bad), "--roi", "100000,0,5,5", "--out", str(tmp_path / "o"), *BASELINE]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("failed: ") and "new\\nline.png" in lines[0]


def test_an_unexpected_error_fails_that_input_alone(tmp_path, monkeypatch):
    from napari_cervseg.workflows import batch

    d = tmp_path / "d"
    d.mkdir()
    for i in range(3):
        _write(d / f"c{i}.png", _cell(i))
    real = batch.segment_item

    def buggy(image, config, name="image", progress=None):
        if name == "c1":
            raise KeyError("a bug")
        return real(image, config, name=name, progress=progress)

    monkeypatch.setattr(batch, "segment_item", buggy)
    summary = run_batch(expand_inputs([d]), tmp_path / "o", BatchConfig(model=None, method="colour-baseline"))
    assert summary["done"] == 2 and len(summary["failed"]) == 1
    assert summary["failed"][0]["reason"].startswith("unexpected KeyError")


def test_an_empty_labels_file_left_by_an_earlier_full_disk_is_redone(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "a.png", _cell())
    out = tmp_path / "o"
    out.mkdir()
    (out / "a_labels.png").write_bytes(b"")  # what the full tmpfs left under the final name
    summary = run_batch(expand_inputs([d]), out, BatchConfig(model=None, method="colour-baseline"))
    assert summary["done"] == 1 and not summary["failed"]
    assert cv2.imread(str(out / "a_labels.png"), cv2.IMREAD_UNCHANGED) is not None
