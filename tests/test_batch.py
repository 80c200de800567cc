"""The batch engine: TIFF stacks, parallel workers, Dask, resume after a kill, huge images."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from napari_cervseg.cli import main
from napari_cervseg.io.images import ImageError, image_info, read_image
from napari_cervseg.workflows.batch import BatchConfig, BatchInput, expand_inputs, run_batch


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _rows(out):
    return list(csv.DictReader((out / "descriptors.csv").open()))


def _labels(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _forged_png(path, width, height):
    """A PNG whose header claims width x height and holds no pixel data: decoding it would need
    width * height * 3 bytes, so only a header check keeps a run from trying."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.fixture()
def cell_folder(tmp_path, synthetic_cells):
    folder = tmp_path / "cells"
    folder.mkdir()
    for i in range(4):
        _write(folder / f"cell{i}.png", synthetic_cells[i][0])
    return folder


def test_every_page_of_a_tiff_stack_is_one_cell(tmp_path, synthetic_cells, model_file):
    frames = np.stack([cv2.resize(synthetic_cells[i][0], (100, 100)) for i in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    assert image_info(tmp_path / "stack.tif") == (3, (100, 100))
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "stack.tif"), "--out", str(out), "--model", model_file, "--quiet"]) == 0
    assert [r["image"] for r in _rows(out)] == ["stack_f0000", "stack_f0001", "stack_f0002"]
    assert [r["source"] for r in _rows(out)][1].endswith("stack.tif [frame 1]")
    for i in range(3):
        labels = _labels(out / f"stack_f{i:04d}_labels.png")
        assert labels.shape == (100, 100) and (labels == 2).any()


def test_two_worker_processes_give_the_same_outputs_as_one(tmp_path, cell_folder, model_file):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["segment", str(cell_folder), "--out", str(one), "--model", model_file, "--quiet"]) == 0
    assert main(["segment", str(cell_folder), "--out", str(two), "--model", model_file, "--quiet",
                 "--workers", "2"]) == 0
    for i in range(4):
        np.testing.assert_array_equal(_labels(one / f"cell{i}_labels.png"), _labels(two / f"cell{i}_labels.png"))
    assert [r["image"] for r in _rows(two)] == [f"cell{i}" for i in range(4)]  # input order, not finish order
    summary = json.loads((two / "summary.json").read_text())
    assert summary["execution"] == {"mode": "2 local processes", "workers": 2, "torch_threads": 1}
    from napari_cervseg.explain import pgc as xai_pgc

    assert summary["cam_backend"] == ("pytorch-grad-cam" if xai_pgc.available() else "builtin")


def test_dask_distributed_cluster_gives_the_same_outputs(tmp_path, cell_folder, model_file):
    distributed = pytest.importorskip("distributed")
    one, on_dask = tmp_path / "one", tmp_path / "dask"
    config = BatchConfig(model=model_file)
    run_batch(expand_inputs([cell_folder]), one, config)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        summary = run_batch(expand_inputs([cell_folder]), on_dask, config, scheduler=cluster.scheduler_address)
    assert summary["done"] == 4 and summary["execution"]["mode"].startswith("dask.distributed")
    for i in range(4):
        np.testing.assert_array_equal(_labels(one / f"cell{i}_labels.png"), _labels(on_dask / f"cell{i}_labels.png"))


def test_unreachable_scheduler_is_a_clear_error(tmp_path, cell_folder, model_file, capsys):
    pytest.importorskip("distributed")
    code = main(["segment", str(cell_folder), "--out", str(tmp_path / "o"), "--model", model_file, "--quiet",
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_inputs_are_streamed_not_loaded_up_front(tmp_path, cell_folder, model_file):
    pulled = []

    def inputs():
        for item in expand_inputs([cell_folder]):
            pulled.append(item.stem)
            yield item

    pulled_at_first_result = []

    def on_record(record):
        pulled_at_first_result.append(len(pulled))

    run_batch(inputs(), tmp_path / "out", BatchConfig(model=model_file), on_record=on_record)
    assert len(pulled) == 4 and pulled_at_first_result[0] <= 2  # a window of 2 x workers in flight


def test_a_killed_run_resumes_without_losing_finished_cells(tmp_path, cell_folder, model_file):
    out = tmp_path / "out"
    config = BatchConfig(model=model_file)
    items = list(expand_inputs([cell_folder]))
    run_batch(items[:2], out, config)  # the first two finished before the "kill"
    (out / "descriptors.csv").unlink()  # a kill before the table was written
    # the third was cut after its heatmap was written (complete: outputs are renamed into place
    # after a check, so a kill leaves whole files or none): a partial output, redone
    from napari_cervseg.io.images import write_png_atomic

    write_png_atomic(out / "cell2_heatmap.png", np.zeros((5, 5, 3), np.uint8))
    before = {i: (out / f"cell{i}_labels.png").read_bytes() for i in range(2)}
    summary = run_batch(items, out, config)
    assert summary["skipped"] == 2 and summary["done"] == 2
    assert {i: (out / f"cell{i}_labels.png").read_bytes() for i in range(2)} == before
    rows = _rows(out)
    assert [r["image"] for r in rows] == [f"cell{i}" for i in range(4)]
    # the kept cells keep their classification from the journal, not just the re-measured areas
    assert all(r["predicted_class"] in ("normal", "abnormal") for r in rows)
    assert read_image(out / "cell2_heatmap.png").ndim == 3
    assert not list(out.glob(".*.tmp*"))  # no temporary file left behind


def test_huge_image_is_refused_from_its_header_with_the_roi_route(tmp_path, capsys):
    huge = _forged_png(tmp_path / "slide.png", 60000, 50000)  # 3 Gpx: 9 GB if decoded
    assert image_info(huge) == (1, (50000, 60000))
    with pytest.raises(ImageError, match="--roi"):
        read_image(huge, max_pixels=4096 * 4096)
    code = main(["segment", str(huge), "--out", str(tmp_path / "o"), "--model", "none",
                 "--method", "colour-baseline", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "slide.png" in err and "3000 Mpx" in err and "--roi X,Y,W,H" in err


def test_roi_route_segments_a_region_of_a_large_image(tmp_path, synthetic_cells, model_file):
    cell = synthetic_cells[0][0]
    field = np.full((600, 800, 3), 235, np.uint8)
    field[200:200 + cell.shape[0], 300:300 + cell.shape[1]] = cell
    _write(tmp_path / "field.png", field)
    out = tmp_path / "out"
    roi = f"300,200,{cell.shape[1]},{cell.shape[0]}"
    assert main(["segment", str(tmp_path / "field.png"), "--out", str(out), "--model", model_file, "--quiet",
                 "--roi", roi, "--max-pixels", "100000"]) == 0
    stem = f"field_x300_y200_w{cell.shape[1]}_h{cell.shape[0]}"
    labels = _labels(out / f"{stem}_labels.png")
    assert labels.shape == cell.shape[:2] and (labels == 2).any()
    # without the region the same limit refuses the whole field
    assert main(["segment", str(tmp_path / "field.png"), "--out", str(tmp_path / "o2"), "--model", model_file,
                 "--quiet", "--max-pixels", "100000"]) == 1


def test_roi_outside_the_image_and_bad_roi_text_are_named(tmp_path, synthetic_cells, capsys):
    _write(tmp_path / "c.png", synthetic_cells[0][0])
    with pytest.raises(ImageError, match="starts outside"):
        read_image(tmp_path / "c.png", roi=(5000, 0, 10, 10))
    assert main(["segment", str(tmp_path / "c.png"), "--out", str(tmp_path / "o"), "--roi", "1,2,3"]) == 2
    assert "X,Y,W,H" in capsys.readouterr().err


def test_stack_frames_and_files_that_share_a_name_are_reported(tmp_path, synthetic_cells, model_file):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "x.png", synthetic_cells[0][0])
    _write(tmp_path / "b" / "x.png", synthetic_cells[1][0])
    out = tmp_path / "out"
    summary_code = main(["segment", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                         "--model", model_file, "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary_code == 1 and summary["done"] == 1
    assert "collide" in summary["failed"][0]["reason"] and summary["failed"][0]["input"].endswith("b/x.png")
    assert set(summary["versions"]) >= {"python", "napari-cervseg", "torch", "numpy"}
    assert set(summary["timings"]) >= {"wall_seconds", "cells_per_second", "seconds_per_cell_median"}


def test_large_image_is_processed_downscaled_and_labels_come_back_full_size(synthetic_cells, model_file):
    from napari_cervseg import segment_cell

    big = cv2.resize(synthetic_cells[0][0], (1500, 1400), interpolation=cv2.INTER_LINEAR)
    result = segment_cell(big, model=model_file)
    assert result.labels.shape == (1400, 1500) and result.heatmap.shape == (1400, 1500)
    assert result.settings["processed_shape"][0] <= 1024 and (result.labels == 2).any()
    assert any("downscaled" in w for w in result.warnings)


def test_batch_input_stems():
    assert BatchInput("/d/s.tif", 3, 12).stem == "s_f0003"
    assert BatchInput("/d/s.tif", 3, 12000).stem == "s_f00003"
    assert BatchInput("/d/c.png", roi=(1, 2, 3, 4)).stem == "c_x1_y2_w3_h4"


def test_threads_sharing_one_model_get_their_own_explanations(synthetic_cells, trained_synthetic_model):
    """Explanations hook the shared network; threads (napari workers, threaded Dask workers) must
    not see each other's activations."""
    from concurrent.futures import ThreadPoolExecutor

    from napari_cervseg import explain

    images = [synthetic_cells[i][0] for i in range(8)]
    for method in ("gradcam++", "lrp-ruleset1"):
        alone = [explain(trained_synthetic_model, im, method=method).heatmap for im in images]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda im, m=method: explain(trained_synthetic_model, im, method=m).heatmap,
                                     images * 3))
        for i, heat in enumerate(together):
            np.testing.assert_allclose(heat, alone[i % 8], atol=1e-5)


def test_auto_workers_stay_in_process_for_a_few_inputs_and_use_the_cores_for_many(monkeypatch):
    from napari_cervseg import cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 16)
    assert cli.auto_workers(3) == 1
    assert cli.auto_workers(1000) == cli.MAX_AUTO_WORKERS == 4
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli.auto_workers(1000) == 2


def test_bad_worker_count_is_refused(tmp_path, synthetic_cells, capsys):
    _write(tmp_path / "c.png", synthetic_cells[0][0])
    assert main(["segment", str(tmp_path / "c.png"), "--out", str(tmp_path / "o"), "--workers", "zero"]) == 2
    assert "--workers zero" in capsys.readouterr().err


def test_wrong_extensions_are_read_by_content_or_named(tmp_path, synthetic_cells, model_file):
    cell = synthetic_cells[0][0]
    png_named_jpg = tmp_path / "cell.jpg"
    png_named_jpg.write_bytes(cv2.imencode(".png", cv2.cvtColor(cell, cv2.COLOR_RGB2BGR))[1].tobytes())
    np.testing.assert_array_equal(read_image(png_named_jpg), cell)  # lossless: read as the PNG it is
    text_named_tif = tmp_path / "notes.tif"
    text_named_tif.write_text("plate 3, well B2")
    with pytest.raises(ImageError, match="notes.tif: cannot be read as an image"):
        read_image(text_named_tif)
    half = tmp_path / "half.png"
    full = cv2.imencode(".png", cell)[1].tobytes()
    half.write_bytes(full[: len(full) // 2])
    out = tmp_path / "out"
    code = main(["segment", str(png_named_jpg), str(text_named_tif), str(half), str(tmp_path / "notes.txt"),
                 "--out", str(out), "--model", model_file, "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 1 and summary["done"] == 1
    assert {Path(f["input"]).name for f in summary["failed"]} == {"notes.tif", "half.png", "notes.txt"}
    assert not (out / "half_labels.png").exists()


def test_read_only_output_folder_is_refused_and_left_alone(tmp_path, synthetic_cells, monkeypatch, capsys):
    import os

    from napari_cervseg import cli

    src = _write(tmp_path / "cell.png", synthetic_cells[0][0])
    out = tmp_path / "ro"
    out.mkdir()
    (out / "cell_labels.png").write_bytes(b"the user's file")
    out.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere: judge by the permission bits as a user would
        monkeypatch.setattr(cli.os, "access", lambda p, mode: Path(p).stat().st_mode & 146 != 0)
    try:
        assert main(["segment", str(src), "--out", str(out), "--quiet"]) == 2
        assert "not writable" in capsys.readouterr().err
        assert (out / "cell_labels.png").read_bytes() == b"the user's file"
    finally:
        out.chmod(0o755)


def test_a_write_that_fails_mid_run_fails_that_input_only(tmp_path, cell_folder, model_file, monkeypatch):
    from napari_cervseg.io import images

    real_write = images._write_bytes

    def disk_full_for_cell1(path, data):
        if "cell1" in path.name:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(images, "_write_bytes", disk_full_for_cell1)
    out = tmp_path / "out"
    summary = run_batch(expand_inputs([cell_folder]), out, BatchConfig(model=model_file))
    assert summary["done"] == 3 and "could not write" in summary["failed"][0]["reason"]
    assert not list(out.glob("cell1*")) and not list(out.glob(".*tmp*"))


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_full_disk_leaves_no_bad_output_and_a_rerun_redoes_it(tmp_path, cell_folder, monkeypatch, damage):
    """A1: the OS (or OpenCV) reports success on a file that is empty or cut short: the check
    before the rename catches it, that input fails with a clear message, nothing is left under an
    output name, and a re-run redoes it without --overwrite."""
    from napari_cervseg.io import images

    real_write = images._write_bytes

    def full_disk(path, data):
        if "cell2_labels" in path.name or "cell3_heatmap" in path.name:
            data = b"" if damage == "empty" else data[: len(data) // 3]
        real_write(path, data)  # "succeeds"

    monkeypatch.setattr(images, "_write_bytes", full_disk)
    out = tmp_path / "out"
    config = BatchConfig(model=None, method="colour-baseline")
    summary = run_batch(expand_inputs([cell_folder]), out, config)
    reasons = {f["input"]: f["reason"] for f in summary["failed"]}
    assert sorted(Path(k).name for k in reasons) == ["cell2.png", "cell3.png"]
    assert all("could not write" in r and "reached the disk" in r for r in reasons.values())
    assert not list(out.glob("cell2_*")) and not list(out.glob("cell3_*")) and not list(out.glob(".*tmp*"))
    for png in out.glob("*.png"):  # every file under a final name is complete
        assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED) is not None
    assert (out / "descriptors.csv").exists() and (out / "summary.json").exists()
    monkeypatch.setattr(images, "_write_bytes", real_write)
    again = run_batch(expand_inputs([cell_folder]), out, config)
    assert again["done"] == 2 and again["skipped"] == 2 and not again["failed"]
    assert (out / "cell2_labels.png").exists() and (out / "cell3_heatmap.png").exists()


def test_a_full_disk_for_the_table_is_a_clear_error_and_leaves_no_temporary_file(tmp_path, cell_folder,
                                                                                  monkeypatch, capsys):
    from napari_cervseg.io import images

    real_write = images._write_bytes

    def full_disk(path, data):
        if "descriptors" in path.name:
            real_write(path, b"")
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(images, "_write_bytes", full_disk)
    out = tmp_path / "out"
    rc = main(["segment", str(cell_folder), "--out", str(out), "--model", "none", "--method", "colour-baseline",
               "--quiet", "--workers", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error: could not write" in err and "descriptors.csv" in err and "Traceback" not in err
    assert not list(out.glob(".*tmp*")) and len(list(out.glob("*_labels.png"))) == 4
