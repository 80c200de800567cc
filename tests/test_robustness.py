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
