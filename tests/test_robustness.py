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

from napari_cervseg.cli import main
from napari_cervseg.workflows.batch import expand_inputs

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
