"""Whole slides (issue 25): lazy pyramids, every cell once across tiles, resumable runs, outputs
a user takes elsewhere (Parquet / CSV / QuPath GeoJSON / HTML), reviews kept."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from synthetic import synthetic_slide

from napari_cervseg.io.slides import SlideError, is_slide_file, open_slide, write_pyramid
from napari_cervseg.workflows import slide_outputs
from napari_cervseg.workflows.slides import SlideConfig, SlideRunError, segment_slide, tile_grid

#: the slide machinery (tiles, journals, resuming, outputs) on flat-coloured synthetic cells, which
#: the classic finder finds deterministically; the learned finder (the default) needs a real cell's
#: texture and is tested in test_finder.py
FINDER = "classic"

@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path, _ = synthetic_slide(tmp_path_factory.mktemp("slide") / "cells.ome.tif")
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, trained_synthetic_model):
    from napari_cervseg import save_model

    return str(save_model(trained_synthetic_model, tmp_path_factory.mktemp("model") / "synthetic"))


@pytest.fixture(scope="module")
def config(model_path):
    # 256 px tiles: most of the 36 cells (110 x 120 px) lie across a tile border
    return SlideConfig(tile=256, margin=128, model=model_path, operating_point=None, finder=FINDER)


@pytest.fixture(scope="module")
def whole_run(slide_path, config, tmp_path_factory):
    return segment_slide(slide_path, tmp_path_factory.mktemp("run"), config, workers=1, scheduler="sync", gallery=8)


def _centres(result):
    return np.array(sorted((round(c["y"]), round(c["x"])) for c in result.cells))


def test_a_pyramidal_ome_tiff_opens_lazily_as_levels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1200, 900, 3), dtype=np.uint8)
    path = write_pyramid(tmp_path / "p.ome.tif", lambda y0, x0, y1, x1: image[y0:y1, x0:x1], (1200, 900),
                         tile=256, n_levels=3, mpp=0.5)
    assert is_slide_file(path)
    with open_slide(path) as slide:
        assert slide.shape == (1200, 900) and slide.downsamples == [1.0, 2.0, 4.0] and slide.mpp == 0.5
        assert np.array_equal(slide.read(100, 50, 400, 700), image[100:400, 50:700])
        assert not isinstance(slide.levels[0], np.ndarray)  # nothing read until asked
        levels = slide.dask_levels()
        assert [lv.shape[:2] for lv in levels] == [(1200, 900), (600, 450), (300, 225)]
        assert np.array_equal(np.asarray(levels[0][:10, :10]), image[:10, :10])


def test_the_plugin_reader_opens_a_slide_as_multiscale_and_leaves_plain_images(slide_path, tmp_path):
    import cv2

    from napari_cervseg.plugin.reader import get_slide_reader

    [(data, kwargs, kind)] = get_slide_reader(str(slide_path))(str(slide_path))
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"] and len(data) == 3
    plain = tmp_path / "cell.tif"
    cv2.imwrite(str(plain), np.zeros((64, 64, 3), np.uint8))
    assert get_slide_reader(str(plain)) is None


def test_bad_slides_are_refused_by_name(tmp_path):
    broken = tmp_path / "cut.ome.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(SlideError, match="cut.ome.tif"):
        open_slide(broken)
    (tmp_path / "x.jpg").write_bytes(b"x")
    with pytest.raises(SlideError, match="not a slide format"):
        open_slide(tmp_path / "x.jpg")
    (tmp_path / "v.mrxs").write_bytes(b"x")
    with pytest.raises(SlideError, match="OpenSlide"):
        open_slide(tmp_path / "v.mrxs")


def test_every_cell_is_found_once_across_tile_borders(whole_run, slide_path, model_path, tmp_path):
    _, centres = synthetic_slide(tmp_path / "again.ome.tif")  # the same cells (same seed)
    found = _centres(whole_run)
    assert whole_run.complete and whole_run.tiles_total == 16
    assert len(found) == len(centres) == 36
    true = np.array(centres, float)
    nearest = np.linalg.norm(found[:, None, :] - true[None, :, :], axis=-1)
    assert np.all(nearest.min(0) < 15)  # each true cell has a found one near
    assert len(set(nearest.argmin(1))) == 36  # ... and no two found cells share a true one
    one_tile = segment_slide(slide_path, tmp_path / "one", SlideConfig(tile=1024, margin=0, model=model_path, finder=FINDER,
                                                                       operating_point=None),
                             workers=1, scheduler="sync", gallery=0)
    assert np.abs(_centres(one_tile) - found).max() <= 2


def test_the_cell_table_is_parquet_and_csv_with_one_row_per_cell(whole_run):
    import csv

    rows = slide_outputs.read_table(whole_run.out)
    assert len(rows) == len(whole_run.cells) and [r["cell_id"] for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        assert row["bbox_y0"] <= row["y"] < row["bbox_y1"] and row["bbox_x0"] <= row["x"] < row["bbox_x1"]
        assert row["verdict"] in ("abnormal", "normal", "no verdict")
        assert row["nucleus_area"] > 0 and row["cytoplasm_area"] > 0
    with open(whole_run.out / "cells.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    summary = json.loads((whole_run.out / "summary.json").read_text())
    assert summary["n_cells"] == len(rows) == summary["n_abnormal"] + summary["n_normal"] + summary["n_no_verdict"]


def test_the_geojson_round_trips_as_qupath_cells(whole_run):
    data = json.loads((whole_run.out / "cells.geojson").read_text())
    cells = [f for f in data["features"] if f["properties"]["objectType"] == "cell"]
    assert data["type"] == "FeatureCollection" and len(cells) == len(whole_run.cells)
    assert len(data["features"]) == len(cells) + len(whole_run.left_out)
    feature = cells[0]
    assert feature["properties"]["objectType"] == "cell"
    assert set(feature["properties"]["classification"]) == {"name", "color"}
    assert feature["nucleusGeometry"]["type"] == "Polygon"
    back = slide_outputs.read_geojson(whole_run.out / "cells.geojson")
    for cell, again in zip(whole_run.cells, back, strict=True):
        assert again["cell_id"] == cell["cell_id"] and again["verdict"] == slide_outputs.verdict_of(cell)
        ring = np.array(again["outline"])
        assert np.array_equal(ring[0], ring[-1])  # closed, as GeoJSON asks
        xs, ys = ring[:, 0], ring[:, 1]  # (x, y) in level-0 pixels, inside the cell's box
        y0, x0, y1, x1 = cell["bbox"]
        assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1 and ys.max() <= y1


def test_the_report_names_every_suspicious_cell(whole_run):
    page = (whole_run.out / "report.html").read_text()
    shown = slide_outputs.by_suspicion(whole_run.cells)[:8]
    for cell in shown:
        assert f'id="cell-{cell["cell_id"]}"' in page
        assert (whole_run.out / "gallery" / f"cell_{cell['cell_id']:06d}.png").exists()
    assert "data:image/png;base64," in page and "<svg" in page  # self-contained: images and plots inline
    counts = slide_outputs.class_counts(whole_run.cells)
    assert f"<td>{counts['n_abnormal']}</td>" in page
    # how the cells were judged, white balance included (a model of one's own: off)
    assert "white balance of the cells' crops\n<code>off</code>" in page


def test_a_stopped_run_resumes_without_redoing_or_losing_a_cell(slide_path, config, whole_run, tmp_path):
    done = []
    first = segment_slide(slide_path, tmp_path, config, workers=1, scheduler="sync",
                          progress=lambda stage, fraction: done.append(stage), should_stop=lambda: len(done) > 6,
                          gallery=0)
    assert not first.complete and 0 < first.tiles_done < first.tiles_total
    assert any("run again" in w for w in first.warnings)
    assert not (tmp_path / "cells.parquet").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "tiles").glob("*.json")}
    second = segment_slide(slide_path, tmp_path, config, workers=1, scheduler="sync", gallery=0)
    assert second.complete
    assert all((tmp_path / "tiles" / name).stat().st_mtime_ns == t for name, t in kept.items())
    assert np.array_equal(_centres(second), _centres(whole_run))


def test_a_run_with_other_settings_or_another_slide_is_refused(slide_path, config, whole_run, tmp_path):
    from dataclasses import replace

    with pytest.raises(SlideRunError, match="other settings.*tile: 256 there, 512 now"):
        segment_slide(slide_path, whole_run.out, replace(config, tile=512), workers=1, scheduler="sync")
    other, _ = synthetic_slide(tmp_path / "other.ome.tif", seed=9)
    with pytest.raises(SlideRunError, match="another slide"):
        segment_slide(other, whole_run.out, config, workers=1, scheduler="sync")


def test_reviews_are_stored_in_the_table_and_survive_a_rerun(slide_path, config, whole_run):
    out = whole_run.out
    slide_outputs.record_review(out, 3, "rejected", verdict="abnormal")
    slide_outputs.record_review(out, 5, "confirmed")
    with pytest.raises(ValueError, match="confirmed"):
        slide_outputs.record_review(out, 5, "maybe")
    rows = {r["cell_id"]: r for r in slide_outputs.read_table(out)}
    assert rows[3]["review"] == "rejected" and rows[5]["review"] == "confirmed" and rows[1]["review"] == ""
    segment_slide(slide_path, out, config, workers=1, scheduler="sync", gallery=0)  # outputs written again
    rows = {r["cell_id"]: r for r in slide_outputs.read_table(out)}
    assert rows[3]["review"] == "rejected" and rows[5]["review"] == "confirmed"
    slide_outputs.record_review(out, 5, "")
    assert "5" not in slide_outputs.read_reviews(out)


def test_empty_tiles_are_skipped_without_reading_them(model_path, tmp_path):
    path, _ = synthetic_slide(tmp_path / "sparse.ome.tif", shape=(2048, 2048), centres=[(300, 300)])
    from napari_cervseg.workflows import slides

    read = []
    original = slides.segment_tile
    slides.segment_tile = lambda slide, spec, cfg: read.append(spec.name) or original(slide, spec, cfg)
    try:
        result = segment_slide(path, tmp_path / "out", SlideConfig(tile=512, margin=128, model=model_path, finder=FINDER,
                                                                                    operating_point=None),
                               workers=1, scheduler="sync", gallery=0)
    finally:
        slides.segment_tile = original
    assert result.complete and len(result.cells) == 1
    assert len(read) < len(tile_grid((2048, 2048), 512)) / 2


def test_config_errors_name_the_setting(slide_path, model_path, tmp_path):
    from napari_cervseg.classify import ModelError

    with pytest.raises(ModelError, match="screening"):  # before any tile is done
        segment_slide(slide_path, tmp_path, SlideConfig(model=model_path), workers=1, scheduler="sync")
    assert not (tmp_path / "tiles").exists()
    with pytest.raises(ValueError, match="tile"):
        SlideConfig(tile=10).check()
    with pytest.raises(ValueError, match="margin"):
        SlideConfig(tile=512, margin=600).check()


@pytest.mark.slow
def test_a_killed_cli_run_resumes_to_the_same_cells(slide_path, model_path, whole_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "napari_cervseg.cli", "slide", str(slide_path), "--out", str(out), "--tile", "256",
           "--margin", "128", "--model", model_path, "--finder", FINDER, "--operating-point", "argmax", "--workers", "1",
           "--quiet",
           "--gallery", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "tiles").glob("r*.json"))) < 6 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((out / "tiles").glob("r*.json")))
    assert 0 < partial < 16
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    rows = slide_outputs.read_table(out)
    assert sorted((round(r["y"]), round(r["x"])) for r in rows) == [tuple(c) for c in _centres(whole_run)]


@pytest.mark.slow
def test_tiles_run_in_parallel_dask_processes_with_the_same_cells(slide_path, config, whole_run, tmp_path):
    result = segment_slide(slide_path, tmp_path, config, workers=2, scheduler="processes", gallery=0)
    assert result.complete and np.array_equal(_centres(result), _centres(whole_run))


def test_a_folder_holding_someone_elses_table_is_refused_untouched(slide_path, config, tmp_path):
    theirs = tmp_path / "cells.csv"
    theirs.write_text("patient,count\n7,12\n")
    with pytest.raises(SlideRunError, match="cells.csv"):
        segment_slide(slide_path, tmp_path, config, workers=1, scheduler="sync")
    assert theirs.read_text() == "patient,count\n7,12\n" and not (tmp_path / "tiles").exists()


def test_a_truncated_slide_is_named_not_a_codec_traceback(slide_path, config, tmp_path):
    cut = tmp_path / "cut.ome.tif"
    data = slide_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideError, match="cut.ome.tif.*truncated or damaged"):
        segment_slide(cut, tmp_path / "out", config, workers=1, scheduler="sync")


def test_left_out_nuclei_are_kept_once_across_tiles_and_are_points_in_the_geojson(tmp_path):
    from napari_cervseg.workflows.slides import TILES, merge_tiles

    grid = tile_grid((600, 1100), 512)
    (tmp_path / TILES).mkdir()
    journals = {grid[0].name: [[100.0, 505.0], [40.0, 40.0]], grid[1].name: [[101.0, 506.5], [300.0, 700.0]]}
    for name, points in journals.items():
        (tmp_path / TILES / f"{name}.json").write_text(json.dumps({"tile": name, "cells": [], "left_out": points}))
    (tmp_path / TILES / f"{grid[2].name}.json").write_text(json.dumps({"tile": grid[2].name, "cells": []}))
    _, _, points = merge_tiles(tmp_path, grid)
    assert points == [[100.0, 505.0], [40.0, 40.0], [300.0, 700.0]]  # the nucleus both tiles saw: once
    cell = {"cell_id": 1, "predicted_class": "normal", "outline": [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]}
    data = slide_outputs.geojson_features([cell], points)
    marks = [f for f in data["features"] if f["geometry"]["type"] == "Point"]
    assert [f["geometry"]["coordinates"] for f in marks] == [[505.0, 100.0], [40.0, 40.0], [700.0, 300.0]]
    assert all(f["properties"]["classification"]["name"] == "Left out" for f in marks)
    path = slide_outputs.write_geojson(tmp_path / "cells.geojson", [cell], points)
    assert [c["cell_id"] for c in slide_outputs.read_geojson(path)] == [1]  # the points are not cells


def test_a_slide_run_names_the_fields_classifier_and_a_run_of_the_old_default_is_not_mixed(tmp_path):
    """SlideConfig stores model "default" as the field route's classifier (ensemble3): a folder
    whose card says "default" (what an older version wrote, meaning the compact network) is
    refused with what differs, never resumed with another classifier."""
    from napari_cervseg.workflows.fields import FIELD_MODEL
    from napari_cervseg.workflows.slides import SlideConfig, SlideRunError, _start_or_resume

    assert SlideConfig().model == SlideConfig(model="default").model == FIELD_MODEL
    assert SlideConfig(model="my.safetensors").model == "my.safetensors"
    identity = {"name": "s.tif", "size": 1, "shape": [10, 10], "head_sha256": "0"}
    _start_or_resume(tmp_path, identity, SlideConfig(), tmp_path / "s.tif")
    _start_or_resume(tmp_path, identity, SlideConfig(model="default"), tmp_path / "s.tif")  # the same run
    card_path = next(p for p in tmp_path.iterdir() if p.suffix == ".json")
    card = json.loads(card_path.read_text())
    card["config"]["model"] = "default"  # as written before the fields' classifier was named
    card_path.write_text(json.dumps(card))
    with pytest.raises(SlideRunError, match="model: 'default' there, 'ensemble3' now"):
        _start_or_resume(tmp_path, identity, SlideConfig(), tmp_path / "s.tif")


def test_a_slide_run_made_before_the_white_balance_is_resumed_only_without_it(tmp_path):
    """A run card without "white_balance" (written before the field route balanced its crops) ran
    as "off": resuming it with the default (into-range) is refused with what differs; with
    white_balance="off" it is the same run and resumes."""
    from napari_cervseg.workflows.fields import WHITE_BALANCE
    from napari_cervseg.workflows.slides import SlideConfig, SlideRunError, _start_or_resume

    assert SlideConfig().white_balance == WHITE_BALANCE == "into-range"  # the bundled classifier's
    assert SlideConfig(model="my_lab.safetensors").white_balance == "off"  # one's own: not known
    with pytest.raises(ValueError, match="white_balance = 'auto'"):
        SlideConfig(white_balance="auto")
    identity = {"name": "s.tif", "size": 1, "shape": [10, 10], "head_sha256": "0"}
    _start_or_resume(tmp_path, identity, SlideConfig(white_balance="off"), tmp_path / "s.tif")
    card_path = next(p for p in tmp_path.iterdir() if p.suffix == ".json")
    card = json.loads(card_path.read_text())
    del card["config"]["white_balance"]  # as an older version wrote it
    card_path.write_text(json.dumps(card))
    with pytest.raises(SlideRunError, match="white_balance: 'off' there, 'into-range' now"):
        _start_or_resume(tmp_path, identity, SlideConfig(), tmp_path / "s.tif")
    _start_or_resume(tmp_path, identity, SlideConfig(white_balance="off"), tmp_path / "s.tif")


@pytest.mark.parametrize("cpus, available_mb, expected", [
    (16, 4_000, 2),   # many cores, little memory: what 4 GB holds
    (2, 64_000, 2),   # few cores, much memory: one per core
    (16, 1_000, 1),   # not even one worker's worth: still one
    (8, 100_000, 8),
])
def test_auto_workers_follow_the_cores_and_the_free_memory(cpus, available_mb, expected):
    from napari_cervseg.workflows.slides import auto_slide_workers

    assert auto_slide_workers(cpus, available_mb) == expected
    assert auto_slide_workers() >= 1  # this machine's


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_a_bad_workers_count_is_refused_before_anything_is_written(tmp_path, capsys, value):
    from napari_cervseg.cli import main

    out = tmp_path / "out"
    assert main(["slide", str(tmp_path / "slide.ome.tif"), "--out", str(out), "--workers", value]) == 2
    err = capsys.readouterr().err
    assert f"--workers {value}" in err and "'auto'" in err
    assert not out.exists()
