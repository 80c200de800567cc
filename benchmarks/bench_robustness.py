"""The standing robustness suite (issue 17): hostile inputs against the CLI, the API, ``measure()``,
batch runs and model loading, counted.

    python benchmarks/bench_robustness.py              # -> benchmarks/results/robustness.{json,md}
    python benchmarks/bench_robustness.py --quick      # a third of the attempts (a smoke run)

Every attempt runs in a forked child process (torch is imported once, here, on one thread, so a
fork is cheap and safe) under a wall-clock timeout and a 6 GB address-space limit. Its outcome is

- ``ok``: it worked (CLI rc 0; rc 1 when some inputs failed, each with a clean reason);
- ``clean error``: refused with a message (ImageError, SegmentationError, ModelError, ValueError,
  OutputError; CLI rc 2 with an ``error:`` line);
- ``crash``: a traceback, an unexpected exception type (also as an input's failure reason), or a
  child that died;
- ``hang``: past the timeout (killed).

Files lost or damaged: before each attempt that writes, the user's files in play are hashed and
checked afterwards (unchanged), and every output under a final name must decode; after a kill, a
full disk or a concurrent run, a plain re-run must complete the outputs, keep every finished output
byte for byte, and leave no temporary file.

Categories: hostile image files (CLI), odd arrays (API ``segment_cell``), ``measure()``, CLI option
values, model files and cards, link loops and odd folders, files a run must not touch (``--out`` =
the input folder), full disks (per-file size limits, RLIMIT_FSIZE, and writes that "succeed"
short), kill + resume, and concurrent runs on one ``--out``. Most CLI attempts use the colour
baseline (``--model none``) to stay fast; the model cases load a small model built here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CLEAN_TYPES = ("ImageError", "SegmentationError", "ModelError", "ValueError", "OutputError",
               "FolderInUseError", "OutputFolderError", "SegmenterError", "DatasetError")
#: failure reasons that are an input's clean refusal (the batch reports "Type: message")
CLEAN_REASONS = CLEAN_TYPES + ("OSError", "FileNotFoundError", "PermissionError")
BASELINE = ["--model", "none", "--method", "colour-baseline", "--quiet", "--workers", "1"]


# ----------------------------------------------------------------------------------------------
# running one attempt in a forked child


def run_child(fn, timeout: float, mem_gb: float = 6.0) -> dict:
    """Run ``fn()`` in a forked child: ``{"status": ok|clean|crash|hang, "detail": ...}``.

    ``fn`` returns a (status, detail) pair itself, or raises: a clean type -> clean, any other
    exception -> crash (with its traceback's last line)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        os.setpgid(0, 0)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (int(mem_gb * 2**30), int(mem_gb * 2**30)))
            sys.stderr = io.StringIO()
            try:
                status, detail = fn()
            except SystemExit as exc:  # argparse
                err = sys.stderr.getvalue()
                status = "clean" if exc.code == 2 and "error:" in err else "crash"
                detail = f"SystemExit {exc.code}: {err.strip().splitlines()[-1] if err.strip() else ''}"
            except BaseException as exc:  # noqa: BLE001 - classified, not hidden
                name = type(exc).__name__
                status = "clean" if name in CLEAN_TYPES and str(exc) else "crash"
                detail = f"{name}: {str(exc)[:300]}"
                if status == "crash":
                    detail += " | " + traceback.format_exc().strip().splitlines()[-3][:200]
            payload = json.dumps({"status": status, "detail": str(detail)[:2000]}).encode()
        except BaseException as exc:  # noqa: BLE001
            payload = json.dumps({"status": "crash", "detail": f"harness: {exc!r}"}).encode()
            code = 1
        with contextlib.suppress(OSError):
            os.write(w, payload)
        os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the child and whatever it started
            os.waitpid(pid, 0)
            os.close(r)
            return {"status": "hang", "detail": f"killed after {timeout:.0f} s"}
        time.sleep(0.01)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    try:
        return json.loads(b"".join(chunks).decode())
    except ValueError:
        return {"status": "crash", "detail": "the child died without a result"}


def cli(argv, expect_outputs: bool = True):
    """An attempt that runs ``cervseg`` in-process (in the child) and classifies its outcome."""
    def fn():
        from napari_cervseg.cli import main

        rc = main([str(a) for a in argv])
        err = sys.stderr.getvalue()
        return classify_cli(rc, err)
    return fn


def classify_cli(rc, err: str):
    last = err.strip().splitlines()[-1] if err.strip() else ""
    if "Traceback" in err:
        return "crash", err[-400:]
    failures = [line for line in err.splitlines() if line.startswith("failed: ")]
    for line in failures:
        reason = line.split(": ", 2)[-1] if line.count(": ") >= 2 else line
        kind = reason.split(":", 1)[0].strip()
        if kind not in CLEAN_REASONS and not reason.startswith("same output name"):
            return "crash", f"unexpected failure type: {line[:300]}"
        if kind == "MemoryError":
            return "crash", line[:300]
    if rc == 0:
        return "ok", last[:300]
    if rc == 1 and failures:
        return "ok", f"{len(failures)} input(s) failed cleanly: {failures[0][:200]}"
    if rc in (1, 2) and "error:" in err:
        return "clean", last[:300]
    return "crash", f"rc {rc}: {last[:300]}"


# ----------------------------------------------------------------------------------------------
# what the attempts are made of


def cell(seed=0, shape=(64, 72)):
    rng = np.random.default_rng(seed)
    img = np.full(tuple(shape) + (3,), 225, np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] // 2, shape[1] // 2
    r = max(2, min(shape[:2]) // 3)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = (180, 150, 200)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < (r // 3) ** 2] = (60, 40, 120)
    return np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def png_bytes(rgb):
    import cv2

    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)[1].tobytes()


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def forged_png(width, height, color_type=2, idat=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + (chunk(b"IDAT", idat) if idat else b"") + chunk(b"IEND", b"")


def forged_bmp(width, height):
    header = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info


def hostile_files(folder: Path, rng: random.Random) -> list[tuple[str, Path]]:
    """(name, path) of hostile image files, written into ``folder``."""
    import tifffile
    from PIL import Image

    files = []

    def add(name, data: bytes | None = None, make=None):
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        elif make is not None:
            make(path)
        files.append((name, path))

    good = png_bytes(cell())
    add("empty.png", b"")
    for i, frac in enumerate([0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]):
        add(f"truncated_{i}.png", good[: max(1, int(len(good) * frac))])
    bad_crc = bytearray(good)
    bad_crc[40] ^= 0xFF
    add("bad_crc.png", bytes(bad_crc))
    for ext in ("png", "jpg", "jpeg", "bmp", "tif", "tiff"):
        for i in range(3):
            add(f"random_{i}.{ext}", bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 17, 600, 5000]))))
    add("text.png", b"this is not an image\n" * 10)
    add("svg.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    add("png_named.jpg", good)
    jpg = io.BytesIO()
    Image.fromarray(cell()).save(jpg, "JPEG")
    add("jpeg_named.png", jpg.getvalue())
    add("jpeg_named.tif", jpg.getvalue())
    add("bomb_30000.png", forged_png(30000, 30000, idat=zlib.compress(b"\0" * 90001 * 50)))
    add("bomb_65535x1.png", forged_png(65535, 1))
    add("bomb_1x65535.png", forged_png(1, 65535))
    add("bomb_2G.png", forged_png(2**31 - 1, 2**31 - 1))
    add("zero_size.png", forged_png(0, 0))
    add("bomb.bmp", forged_bmp(60000, 60000))
    add("bomb_negative.bmp", forged_bmp(100, -100))
    big_tiff = folder / "bomb_big.tif"
    with tifffile.TiffWriter(big_tiff) as tw:  # a page that declares 40000 x 40000 but holds little
        tw.write(shape=(40000, 40000), dtype=np.uint8, compression="zlib", tile=(1024, 1024),
                 data=(np.zeros((1024, 1024), np.uint8) for _ in range(40 * 40)))
    files.append(("bomb_big.tif", big_tiff))
    # odd but valid pictures
    for shape in [(1, 1), (1, 80), (80, 1), (2, 2), (3, 500), (500, 3)]:
        add(f"tiny_{shape[0]}x{shape[1]}.png", png_bytes(cell(1, shape) if min(shape) > 2 else
                                                          np.full(shape + (3,), 128, np.uint8)))
    add("constant.png", png_bytes(np.full((60, 60, 3), 200, np.uint8)))
    add("black.png", png_bytes(np.zeros((60, 60, 3), np.uint8)))
    add("grey.png", png_bytes(cell()[..., 0]))
    add("grey16.png", png_bytes(cell()[..., 0].astype(np.uint16) * 257))
    add("rgb16.png", png_bytes(cell().astype(np.uint16) * 257))
    for mode in ("LA", "P", "1", "I", "F", "CMYK", "RGBA", "L", "I;16"):
        ext = "jpg" if mode == "CMYK" else "tif" if mode in ("F", "I") else "png"

        def make(path, mode=mode):
            im = Image.fromarray(cell())
            im = im.convert("L").convert(mode) if mode.startswith("I") else im.convert(mode)
            im.save(path)
        add(f"mode_{mode.replace(';', '_')}.{ext}", make=make)
    add("cmyk_q50.jpg", make=lambda p: Image.fromarray(cell(2)).convert("CMYK").save(p, quality=50))
    add("ycck.jpg", make=lambda p: Image.fromarray(cell(3)).convert("CMYK").save(p, quality=90))
    add("animated.gif", make=lambda p: Image.fromarray(cell()).save(
        p, save_all=True, append_images=[Image.fromarray(cell(1))]))
    add("webp.webp", make=lambda p: Image.fromarray(cell()).save(p))
    add("exif_rotated.jpg", make=lambda p: Image.fromarray(cell(4, (60, 90))).save(p, exif=b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0"))
    rgb = cell()
    tiffs = {
        "planar_rgb.tif": {"data": np.moveaxis(rgb, -1, 0), "photometric": "rgb", "planarconfig": "separate"},
        "five_channels.tif": {"data": np.zeros((127, 121, 5), np.uint8), "photometric": "minisblack",
                                  "planarconfig": "contig"},
        "two_channels_planar.tif": {"data": np.zeros((2, 40, 40), np.uint8), "photometric": "minisblack",
                                        "planarconfig": "separate"},
        "volume.tif": {"data": np.stack([rgb[..., 0]] * 4), "volumetric": True, "tile": (16, 16)},
        "stack3.tif": {"data": np.stack([rgb] * 3)},
        "stack_grey.tif": {"data": np.stack([rgb[..., 0]] * 5)},
        "float_nan.tif": {"data": np.where(rgb[..., 0] > 100, np.nan, rgb[..., 0]).astype(np.float32)},
        "float_inf.tif": {"data": np.where(rgb[..., 0] > 100, np.inf, -np.inf).astype(np.float32)},
        "all_nan.tif": {"data": np.full((40, 40), np.nan, np.float32)},
        "float64.tif": {"data": rgb.astype(np.float64) / 255},
        "int8.tif": {"data": (rgb.astype(np.int16) - 128).astype(np.int8)},
        "int32.tif": {"data": rgb.astype(np.int32) * 1000 - 5},
        "uint32_huge.tif": {"data": rgb.astype(np.uint32) * 16_000_000},
        "bool.tif": {"data": rgb[..., 0] > 100},
        "compressed.tif": {"data": rgb, "compression": "zlib"},
        "tiled.tif": {"data": rgb, "tile": (16, 16)},
        "bigtiff.tif": {"data": rgb, "bigtiff": True},
        "complex.tif": {"data": rgb[..., 0].astype(np.complex64)},
        "rgba.tif": {"data": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])},
        "one_pixel.tif": {"data": np.zeros((1, 1, 3), np.uint8)},
    }
    for name, kw in tiffs.items():
        add(name, make=lambda p, kw=kw: tifffile.imwrite(p, kw.pop("data"), **kw))

    def mixed_pages(path):
        with tifffile.TiffWriter(path) as tw:
            tw.write(cell(0, (50, 60)))
            tw.write(cell(1, (70, 40)))
            tw.write(np.zeros((30, 30, 5), np.uint8), photometric="minisblack", planarconfig="contig")
    add("mixed_pages.tif", make=mixed_pages)
    # names and file kinds
    add("with space é ü.png", good)
    add("semi;colon'quote\".png", good)
    add("newline\nname.png", good)
    add("x" * 200 + ".png", good)  # its outputs' names are longer than a file name may be
    add("dots.in.name.png", good)
    add("UPPER.PNG", good)
    add("noext", good)
    (folder / "dir.png").mkdir()
    files.append(("dir.png", folder / "dir.png"))
    os.mkfifo(folder / "fifo.png")
    files.append(("fifo.png", folder / "fifo.png"))
    (folder / "dangling.png").symlink_to(folder / "does_not_exist.png")
    files.append(("dangling.png", folder / "dangling.png"))
    (folder / "devzero.png").symlink_to("/dev/zero")
    files.append(("devzero.png", folder / "devzero.png"))
    (folder / "devnull.png").symlink_to("/dev/null")
    files.append(("devnull.png", folder / "devnull.png"))
    (folder / "link_to_good.png").symlink_to(folder / "png_named.jpg")
    files.append(("link_to_good.png", folder / "link_to_good.png"))
    files.append(("missing.png", folder / "missing.png"))
    return files


# ----------------------------------------------------------------------------------------------
# categories


def cat_files(work: Path, rng, quick) -> list:
    src = work / "files"
    src.mkdir()
    files = hostile_files(src, rng)
    attempts = []
    rois = [None, "0,0,10,10", "5,5,30000,30000", "100000,0,5,5"]
    for i, (name, path) in enumerate(files):
        for j, roi in enumerate(rois if not quick else rois[:1]):
            if j and i % 2:  # every file plain, every other file with each region too
                continue
            out = work / "out_files" / f"{i}_{j}"
            argv = ["segment", str(path), "--out", str(out), *BASELINE] + (["--roi", roi] if roi else [])
            attempts.append((f"{name}" + (f" --roi {roi}" if roi else ""), cli(argv), 60, {"out": out}))
    # a folder of all of them at once, and as a recursive glob
    attempts.append(("the whole folder", cli(["segment", str(src), "--out", str(work / "out_all"), *BASELINE]),
                     240, {"out": work / "out_all"}))
    attempts.append(("the folder as a ** glob", cli(["segment", str(src) + "/**/*", "--out", str(work / "out_glob"),
                                                     *BASELINE]), 240, {"out": work / "out_glob"}))
    return attempts


def cat_arrays(work: Path, rng, quick) -> list:
    rgb = cell()
    arrays = {
        "None": None, "empty 0x0": np.zeros((0, 0)), "empty 0x5x3": np.zeros((0, 5, 3)),
        "1x1": np.zeros((1, 1)), "1x100": np.zeros((1, 100)), "100x1 rgb": np.zeros((100, 1, 3), np.uint8),
        "2x2x3": rgb[:2, :2], "5x64x64": np.zeros((5, 64, 64)), "64x64x5": np.zeros((64, 64, 5)),
        "64x64x2": np.zeros((64, 64, 2), np.uint8), "3x64x64": np.moveaxis(rgb, -1, 0),
        "4D": np.zeros((2, 3, 64, 64)), "1D": np.zeros(100), "0D": np.array(3.0),
        "bool": rgb[..., 0] > 100, "int8": (rgb.astype(int) - 128).astype(np.int8),
        "int64": rgb.astype(np.int64) * 10**12, "uint16": rgb.astype(np.uint16) * 257,
        "float16": rgb.astype(np.float16), "float32 nan": np.where(rgb > 100, np.nan, 1.0).astype(np.float32),
        "all nan": np.full((40, 40), np.nan), "all inf": np.full((40, 40), np.inf),
        "+-inf": np.where(rgb > 100, np.inf, -np.inf), "1e308": rgb * 1e306, "negative": -rgb.astype(float),
        "constant": np.full((50, 50, 3), 7, np.uint8), "complex": rgb.astype(np.complex64),
        "object": np.array([[object()] * 3] * 3), "strings": np.array([["a", "b"], ["c", "d"]]),
        "list": rgb.tolist(), "nested ragged": [[1, 2], [3]], "string": "not an image",
        "non-contiguous": rgb[::2, ::-1], "read-only": np.frombuffer(rgb.tobytes(), np.uint8).reshape(rgb.shape),
        "fortran": np.asfortranarray(rgb), "rgba": np.dstack([rgb, rgb[..., :1]]),
        "huge 5000x5000": np.zeros((5000, 5000), np.uint8), "4096x4097": np.zeros((4096, 4097), np.uint8),
        "datetime": np.zeros((5, 5), "datetime64[s]"), "masked": np.ma.masked_less(rgb, 50),
        "structured": np.zeros((5, 5), dtype=[("a", "f4"), ("b", "i4")]),
    }
    options = [{}, {"dilation": 1e9}, {"dilation": -1}, {"dilation": float("nan")}, {"bogus": 1},
               {"work_size": 8}, {"nucleus_iterations": 10**9}, {"nucleus_seed": "bogus"}, {"grouping": 7},
               {"max_pixels": -1}, {"roi": "0,0,10,10"}, {"roi": (5, 5, -3, 2)}, {"inpaint_nucleus": "yes"},
               {"dilation": "3"}, {"dilation": True}]
    attempts = []

    def api(image, **kw):
        def fn():
            from napari_cervseg import segment_cell

            kw2 = dict(kw)
            roi = kw2.pop("roi", None)
            if roi is not None:
                from napari_cervseg.io.images import ImageError, parse_roi

                try:
                    x, y, w, h = parse_roi(roi)
                except ImageError:
                    raise
                img = np.asarray(image)[y:y + h, x:x + w]
            else:
                img = image
            result = segment_cell(img, model=None, method="colour-baseline", **kw2)
            if result.labels.shape != np.shape(img)[:2]:
                return "crash", f"labels {result.labels.shape} for an image {np.shape(img)}"
            return "ok", f"cell_found={result.cell_found}"
        return fn

    for name, image in arrays.items():
        attempts.append((f"segment_cell({name})", api(image), 60, {}))
    for opt in options:
        attempts.append((f"segment_cell(cell, {opt})", api(rgb, **opt), 60, {}))
    methods = ["gradcam", "bogus", "", None, 5]
    for m in methods:
        def fn(m=m):
            from napari_cervseg import segment_cell

            segment_cell(rgb, model=None, method=m)
            return "ok", ""
        attempts.append((f"segment_cell(method={m!r}, model=None)", fn, 60, {}))
    return attempts


def cat_measure(work: Path, rng, quick) -> list:
    base = np.zeros((80, 80), np.uint8)
    base[10:70, 10:70] = 1
    base[30:45, 30:45] = 2
    two = base.copy()
    two[60:66, 60:66] = 2
    labels = {
        "good": base, "float 1.5": np.where(base == 2, 1.5, base.astype(float)), "float whole": base.astype(float),
        "nan": np.where(base == 2, np.nan, base.astype(float)), "negative": base.astype(int) - 1,
        "value 3": base + (base == 2), "value 255": np.where(base == 2, 255, base).astype(np.uint8),
        "bool": base > 0, "int64": base.astype(np.int64), "uint16": base.astype(np.uint16),
        "3D": np.stack([base] * 2), "rgb": np.dstack([base] * 3), "empty 0x0": np.zeros((0, 0), np.uint8),
        "1x1 nucleus": np.array([[2]]), "1xN": np.array([[0, 1, 2, 2, 1, 0]]), "all nucleus": np.full((20, 20), 2),
        "all background": np.zeros((20, 20)), "two nuclei": two, "nucleus no cytoplasm": np.where(base == 1, 0, base),
        "checkerboard": (np.indices((40, 40)).sum(0) % 3), "list": base.tolist(), "None": None,
        "strings": np.array([["0", "1"]]), "complex": base.astype(np.complex64), "inf": np.full((5, 5), np.inf),
        "object": np.array([[None, 1]], dtype=object), "huge 3000x3000 noise": np.random.default_rng(0).integers(
            0, 3, (3000, 3000)).astype(np.uint8),
    }
    rgb = cell(0, (80, 80))
    images = {"none": None, "matching": rgb, "other shape": cell(0, (40, 40)), "nan image": np.full((80, 80), np.nan),
              "grey": rgb[..., 0], "5 channels": np.zeros((80, 80, 5)), "string": "x"}
    sizes = [None, 0.25, 0, -1, float("inf"), float("nan"), [0.2], "0.2", True, 1e-300, np.float32(0.5), 1e200]
    attempts = []

    def m(lab, img, ps):
        def fn():
            from napari_cervseg.measure.descriptors import measure

            row = measure(lab, img, pixel_size=ps)
            bad = [k for k, v in row.items() if isinstance(v, float) and np.isinf(v)]
            return "ok", f"nucleus_area={row['nucleus_area']}" + (f" inf in {bad[:2]}" if bad else "")
        return fn

    for name, lab in labels.items():
        attempts.append((f"measure({name})", m(lab, None, None), 60, {}))
        attempts.append((f"measure({name}, image, 0.25)", m(lab, rgb if np.shape(lab)[:2] == (80, 80) else None,
                                                             0.25), 60, {}))
    for name, img in images.items():
        attempts.append((f"measure(good, image={name})", m(base, img, None), 60, {}))
    for ps in sizes:
        attempts.append((f"measure(good, pixel_size={ps!r})", m(base, None, ps), 60, {}))
    return attempts


def cat_options(work: Path, rng, quick) -> list:
    d = work / "opt_in"
    d.mkdir()
    (d / "a.png").write_bytes(png_bytes(cell()))
    (d / "b.png").write_bytes(png_bytes(cell(1)))
    a_file = work / "a_file"
    a_file.write_text("x")
    options = [
        ["--dilation", "1e9"], ["--dilation", "-1"], ["--dilation", "nan"], ["--dilation", "inf"], ["--dilation", "abc"],
        ["--dilation", "1e9", "--workers", "2"], ["--device", "bogus"], ["--device", "cuda"], ["--device", "cuda:7"],
        ["--device", "mps"], ["--device", ""], ["--device", "cpu:0"], ["--device", "auto"], ["--workers", "0"],
        ["--workers", "-1"], ["--workers", "abc"], ["--workers", "1.5"], ["--workers", "2"], ["--roi", "abc"],
        ["--roi", "0,0,0,0"], ["--roi", "-1,0,5,5"], ["--roi", "1,2,3"], ["--roi", "1e9,1e9,5,5"], ["--roi", "0,0,1e12,1e12"],
        ["--roi", "nan,0,5,5"], ["--max-pixels", "-5"], ["--max-pixels", "0"], ["--max-pixels", "1"],
        ["--max-pixels", "99999999999999999999"], ["--pixel-size", "-1"], ["--pixel-size", "0"], ["--pixel-size", "inf"],
        ["--pixel-size", "nan"], ["--pixel-size", "abc"], ["--pixel-size", "1e-300"], ["--operating-point", "bogus"],
        ["--operating-point", "2"], ["--target", "bogus"], ["--method", "bogus"], ["--grouping", "bogus"],
        ["--work-size", "100000"], ["--work-size", "0"], ["--nucleus-iterations", "-1"], ["--nucleus-iterations", "1000"],
        ["--cytoplasm-iterations", "0"], ["--smooth", "nan"], ["--smooth", "1e9"], ["--nucleus-seed", "bogus"],
        ["--log-scale-factor", "0"], ["--inpainter", "bogus"], ["--layer", "nope"], ["--segmenter", "bogus"],
        ["--scheduler", "tcp://127.0.0.1:1"], ["--scheduler", "bogus://"], ["--no-inpaint-nucleus"], ["--overwrite"],
        ["--quiet", "--quiet"], ["--explain-method", "bogus"], ["--lama-model", "/nonexistent"],
    ]
    attempts = []
    for i, opt in enumerate(options):
        out = work / "out_opt" / str(i)
        argv = ["segment", str(d), "--out", str(out), "--model", "none", "--method", "colour-baseline", "--quiet",
                *([] if "--workers" in opt else ["--workers", "1"]), *opt]
        attempts.append((" ".join(opt), cli(argv), 120, {"out": out}))
    outs = {"--out is a file": a_file, "--out under a file": a_file / "sub", "--out empty": "",
            "--out /dev/null": "/dev/null", "--out /proc": "/proc/cervseg"}
    for name, out in outs.items():
        attempts.append((name, cli(["segment", str(d), "--out", str(out), *BASELINE]), 60, {}))
    for name, inputs in {"no such input": [work / "nope.png"], "empty glob": [str(d) + "/*.xyz"],
                         "empty folder": [work / "out_opt"], "input is /dev/zero": ["/dev/zero"],
                         "input is /proc/self/status": ["/proc/self/status"]}.items():
        attempts.append((name, cli(["segment", *inputs, "--out", str(work / "o_in"), *BASELINE]), 60, {}))
    return attempts


def cat_models(work: Path, rng, quick) -> list:
    import torch

    from napari_cervseg.classify import save_model
    from napari_cervseg.classify.networks import CompactCNN

    folder = work / "models"
    folder.mkdir()
    torch.manual_seed(0)
    weights = save_model(CompactCNN(widths=(8, 16, 16, 32)), folder / "tiny.safetensors",
                         {"architecture": "compact", "arch_kwargs": {"widths": [8, 16, 16, 32]},
                          "preprocess": {"input_size": 64}, "class_names": ["normal", "abnormal"],
                          "cam_layer": "features.block4"})
    card = json.loads(weights.with_suffix(".json").read_text())
    marker = work / "CODE_RAN"
    changes = {
        "architecture 5": {"architecture": 5}, "architecture list": {"architecture": ["compact"]},
        "architecture unknown": {"architecture": "resnet"}, "no architecture": {"architecture": None},
        "arch_kwargs string": {"arch_kwargs": "x"}, "arch_kwargs list": {"arch_kwargs": [1]},
        "width -1": {"arch_kwargs": {"widths": [-1, 16, 16, 32]}}, "width 0": {"arch_kwargs": {"widths": [0, 16, 16, 32]}},
        "width 1e9": {"arch_kwargs": {"widths": [10**9, 16, 16, 32]}}, "width 1.5": {"arch_kwargs": {"widths": [1.5, 16, 16, 32]}},
        "widths string": {"arch_kwargs": {"widths": "abc"}}, "widths empty": {"arch_kwargs": {"widths": []}},
        "widths 100 long": {"arch_kwargs": {"widths": [8] * 100}}, "unknown kwarg": {"arch_kwargs": {"bogus": 1}},
        "n_classes 1": {"arch_kwargs": {"widths": [8, 16, 16, 32], "n_classes": 1}},
        "n_classes 3 vs 2 names": {"arch_kwargs": {"widths": [8, 16, 16, 32], "n_classes": 3}},
        "dropout 5": {"arch_kwargs": {"widths": [8, 16, 16, 32], "dropout": 5}},
        "input -5": {"preprocess": {"input_size": -5}}, "input 0": {"preprocess": {"input_size": 0}},
        "input 1e6": {"preprocess": {"input_size": 10**6}}, "input 3": {"preprocess": {"input_size": 3}},
        "input 64.5": {"preprocess": {"input_size": 64.5}}, "input string": {"preprocess": {"input_size": "64"}},
        "top input_size string": {"input_size": "big"}, "top input_size -1": {"input_size": -1},
        "class_names ab": {"class_names": "ab"}, "class_names one": {"class_names": ["a"]},
        "class_names repeated": {"class_names": ["a", "a"]}, "class_names numbers": {"class_names": [1, 2]},
        "class_names empty strings": {"class_names": ["", ""]}, "class_names dict": {"class_names": {"a": 1}},
        "std 0": {"preprocess": {"input_size": 64, "std": [0, 0, 0]}}, "std -1": {"preprocess": {"input_size": 64, "std": [-1, 1, 1]}},
        "std nan": {"preprocess": {"input_size": 64, "std": [float("nan"), 1, 1]}},
        "mean 2 values": {"preprocess": {"input_size": 64, "mean": [1, 2]}},
        "mean strings": {"preprocess": {"input_size": 64, "mean": ["a", "b", "c"]}},
        "mean inf": {"preprocess": {"input_size": 64, "mean": [float("inf"), 0, 0]}},
        "preprocess string": {"preprocess": "x"}, "median 4": {"preprocess": {"input_size": 64, "median_ksize": 4}},
        "median -3": {"preprocess": {"input_size": 64, "median_ksize": -3}},
        "median 1e9": {"preprocess": {"input_size": 64, "median_ksize": 10**9 + 1}},
        "equalise bogus": {"preprocess": {"input_size": 64, "equalise": "bogus"}},
        "cam_layer 7": {"cam_layer": 7}, "cam_layer nope": {"cam_layer": "nope"},
        "operating point 5": {"operating_points": {"s": {"abnormal_threshold": 5}}},
        "operating point list": {"operating_points": {"s": [1]}}, "operating points string": {"operating_points": "x"},
    }
    texts = {"100000-deep": "[" * 100000 + "]" * 100000, "5000 digits": '{"architecture": "compact", "input_size": '
             + "9" * 5000 + "}", "list": "[1, 2]", "cut": '{"architecture": "compact"', "not utf-8": "\xff\xfe\x00",
             "empty": "", "null": "null", "NaN literal": '{"architecture": "compact", "preprocess": {"std": [NaN, 1, 1]}}',
             "huge 9 MB": '{"architecture": "compact", "pad": "' + "x" * (9 * 1024 * 1024) + '"}'}
    attempts = []

    def load_with(card_text: bytes, weights_bytes: bytes | None = None, suffix=".safetensors"):
        def fn():
            from napari_cervseg.classify import load_model

            d = Path(tempfile.mkdtemp(dir=folder))
            w = d / f"m{suffix}"
            w.write_bytes(weights_bytes if weights_bytes is not None else weights.read_bytes())
            (d / "m.json").write_bytes(card_text)
            model = load_model(str(w))
            from napari_cervseg.classify.predict import classify

            c = classify(model, cell())
            if not np.isfinite(c.probability):
                return "crash", f"accepted a card that gives probability {c.probability}"
            return "ok", f"{c.predicted_class} {c.probability:.3f}"
        return fn

    for name, change in changes.items():
        text = json.dumps({**card, **change}).encode()
        attempts.append((f"card: {name}", load_with(text), 60, {}))
    for name, text in texts.items():
        attempts.append((f"card text: {name}", load_with(text.encode("latin-1")), 60, {}))
    good_card = weights.with_suffix(".json").read_bytes()
    good = weights.read_bytes()

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = io.BytesIO()
    import pickle

    pickle.dump(Evil(), evil)
    weights_cases = {"truncated half": (good[: len(good) // 2], ".safetensors"), "empty": (b"", ".safetensors"),
                     "random": (bytes(rng.getrandbits(8) for _ in range(4096)), ".safetensors"),
                     "header only": (good[:8], ".safetensors"), "header claims 1e18": (struct.pack("<Q", 10**18) + b"{}",
                                                                                   ".safetensors"),
                     "pickle that runs code (.pt)": (evil.getvalue(), ".pt"), "pickle (.pth)": (evil.getvalue(), ".pth"),
                     "random .keras": (bytes(rng.getrandbits(8) for _ in range(2048)), ".keras"),
                     "random .h5": (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, ".h5"), "zip .keras": (b"PK\x05\x06" + b"\0" * 18, ".keras"),
                     "unknown suffix": (good, ".bin")}
    for name, (data, suffix) in weights_cases.items():
        attempts.append((f"weights: {name}", load_with(good_card, data, suffix), 120, {}))

    def fifo_model():
        from napari_cervseg.classify import load_model

        d = Path(tempfile.mkdtemp(dir=folder))
        os.mkfifo(d / "m.safetensors")
        (d / "m.json").write_bytes(good_card)
        load_model(str(d / "m.safetensors"))
        return "ok", ""

    def fifo_card():
        from napari_cervseg.classify import load_model

        d = Path(tempfile.mkdtemp(dir=folder))
        (d / "m.safetensors").write_bytes(good)
        os.mkfifo(d / "m.json")
        load_model(str(d / "m.safetensors"))
        return "ok", ""

    attempts.append(("weights: a FIFO", fifo_model, 30, {}))
    attempts.append(("card: a FIFO", fifo_card, 30, {}))
    for name in ("/dev/zero", "/dev/null", str(folder), "nonexistent.safetensors", "", "default "):
        def fn(name=name):
            from napari_cervseg.classify import load_model

            load_model(name)
            return "ok", ""
        attempts.append((f"load_model({name!r})", fn, 30, {}))
    # a few through the CLI
    d = work / "model_in"
    d.mkdir()
    (d / "a.png").write_bytes(png_bytes(cell()))
    bad = folder / "cli_bad"
    bad.mkdir()
    (bad / "m.safetensors").write_bytes(good)
    (bad / "m.json").write_text(json.dumps({**card, "class_names": "ab"}))
    good_dir = folder / "cli_good"
    good_dir.mkdir()
    (good_dir / "m.safetensors").write_bytes(good)
    (good_dir / "m.json").write_bytes(good_card)
    for name, model in {"bad card": bad / "m.safetensors", "good tiny model": good_dir / "m.safetensors",
                        "model /dev/zero": "/dev/zero"}.items():
        out = work / "out_model" / name.replace(" ", "_")
        attempts.append((f"cli --model {name}", cli(["segment", str(d), "--out", str(out), "--model", str(model),
                                                     "--quiet", "--workers", "1"]), 180, {"out": out}))
    attempts.append(("no model file ran code", lambda: (("crash", "a pickle ran code") if marker.exists()
                                                         else ("ok", "no marker file")), 10, {}))
    return attempts


def cat_links(work: Path, rng, quick) -> list:
    attempts = []
    layouts = {
        "sub -> . and up -> ..": [("sub", "."), ("up", "..")],
        "sub -> .": [("sub", ".")],
        "mutual a -> b -> a": [("a", "b"), ("b", "a")],
        "self loop": [("self", "self")],
        "link to /": [("root", "/")],
        "link to /proc": [("proc", "/proc")],
        "deep chain": [(f"l{i}", f"l{i + 1}") for i in range(40)],
        "link to parent's parent": [("pp", "../..")],
    }
    for i, (name, links) in enumerate(layouts.items()):
        d = work / f"links{i}" / "d"
        d.mkdir(parents=True)
        (d / "a.png").write_bytes(png_bytes(cell()))
        (d / "real").mkdir()
        (d / "real" / "b.png").write_bytes(png_bytes(cell(1)))
        for link, target in links:
            (d / link).symlink_to(target)
        for j, pattern in enumerate([str(d) + "/**/*.png", str(d) + "/*/*.png", str(d), str(d) + "/**"]):
            out = work / f"links{i}" / f"o{j}"

            def fn(pattern=pattern, out=out, d=d):
                status, detail = cli(["segment", pattern, "--out", str(out), *BASELINE])()
                n = len(list(out.glob("*_labels.png")))
                expected = 1 if pattern == str(d) or pattern.endswith("/*/*.png") else 2
                if status == "ok" and n != expected:
                    return "crash", f"{n} outputs for {expected} images"
                return status, detail
            attempts.append((f"{name}: {pattern.replace(str(d), 'd')}", fn, 60, {"out": out}))
    deep = work / "deep"
    p = deep
    for i in range(60):
        p = p / f"level{i}"
    p.mkdir(parents=True)
    (p / "deep.png").write_bytes(png_bytes(cell()))
    attempts.append(("60 levels deep **", cli(["segment", str(deep) + "/**/*.png", "--out", str(work / "o_deep"),
                                              *BASELINE]), 60, {"out": work / "o_deep"}))
    return attempts


def hash_files(paths) -> dict:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if Path(p).is_file()}


def outputs_decode(out: Path) -> list[str]:
    """Files under a final output name that do not decode (damaged)."""
    import cv2

    bad = []
    if not out.is_dir():
        return bad
    for p in out.glob("*.png"):
        if cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is None:
            bad.append(p.name)
    for name in ("descriptors.csv", "summary.json"):
        q = out / name
        if q.exists():
            try:
                (json.loads if name.endswith(".json") else str)(q.read_text())
                if q.stat().st_size == 0:
                    bad.append(name)
            except ValueError:
                bad.append(name)
    return bad


def cat_user_files(work: Path, rng, quick) -> list:
    """--out is the input folder, holding user files with output-like names and hand-corrected labels."""
    attempts = []
    scenarios = ["overlay", "heatmap", "labels hand-corrected", "descriptors.csv", "summary.json", "notes",
                 "all", "overwrite all"]
    for k, scenario in enumerate(scenarios * (1 if quick else 2)):
        d = work / f"user{k}"
        d.mkdir()
        for i in range(3):
            (d / f"c{i}.png").write_bytes(png_bytes(cell(i)))
        user = []
        if scenario in ("overlay", "all", "overwrite all"):
            (d / "c0_overlay.png").write_bytes(png_bytes(cell(9)))
            user.append(d / "c0_overlay.png")
        if scenario in ("heatmap", "all", "overwrite all"):
            (d / "c1_heatmap.png").write_bytes(png_bytes(cell(8)))
            user.append(d / "c1_heatmap.png")
        if scenario in ("labels hand-corrected", "all"):
            lab = np.zeros((64, 72), np.uint8)
            lab[10:50, 10:60] = 1
            lab[20:30, 20:30] = 2
            (d / "c2_labels.png").write_bytes(png_bytes(lab))
            user.append(d / "c2_labels.png")
        if scenario in ("descriptors.csv", "all", "overwrite all"):
            (d / "descriptors.csv").write_text("patient,grade\n1,2\n")
            user.append(d / "descriptors.csv")
        if scenario in ("summary.json", "all"):
            (d / "summary.json").write_text('{"mine": 1}')
            user.append(d / "summary.json")
        (d / "notes.txt").write_text("the user's notes")
        user.append(d / "notes.txt")
        user += [d / f"c{i}.png" for i in range(3)]
        extra = ["--overwrite"] if scenario == "overwrite all" else []
        attempts.append((f"--out = input folder with {scenario}" + (f" (again {k})" if k >= len(scenarios) else ""),
                         cli(["segment", str(d), "--out", str(d), *BASELINE, *extra]), 60,
                         {"out": d, "user_files": user}))
    return attempts


def cat_full_disk(work: Path, rng, quick) -> list:
    """Writes that fail: RLIMIT_FSIZE (any file over N bytes fails with EFBIG, as a full disk does),
    and writes that report success but leave a short file (what OpenCV did on a full tmpfs)."""
    attempts = []
    src = work / "disk_in"
    src.mkdir()
    for i in range(6):
        (src / f"c{i}.png").write_bytes(png_bytes(cell(i, (60 + 7 * i, 70 + 5 * i))))
    limits = [600, 2000, 5000, 9000, 14000, 20000, 30000, 60000]
    for k, limit in enumerate(limits * (1 if quick else 2)):
        out = work / f"disk_out{k}"

        def fn(limit=limit, out=out):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            return cli(["segment", str(src), "--out", str(out), *BASELINE])()
        attempts.append((f"files over {limit} bytes fail (RLIMIT_FSIZE)", fn, 120,
                         {"out": out, "rerun": ["segment", str(src), "--out", str(out), *BASELINE], "expect": 6}))
    for k in range(4 if quick else 8):
        out = work / f"short_out{k}"
        seed = 100 + k

        def fn(out=out, seed=seed):
            from napari_cervseg.io import images

            real = images._write_bytes
            r = random.Random(seed)

            def short(path, data):
                real(path, data[: r.randrange(len(data))] if r.random() < 0.4 else data)
            images._write_bytes = short
            return cli(["segment", str(src), "--out", str(out), *BASELINE])()
        attempts.append((f"writes that succeed short (seed {seed})", fn, 120,
                         {"out": out, "rerun": ["segment", str(src), "--out", str(out), *BASELINE], "expect": 6}))
    return attempts


def kill_cli_after(argv: list[str], delay: float) -> None:
    """Run ``cervseg ARGV`` in a forked child and SIGKILL it after `delay` seconds."""
    pid = os.fork()
    if pid == 0:
        sys.stderr = io.StringIO()
        try:
            from napari_cervseg.cli import main

            main(argv)
        finally:
            os._exit(0)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def cat_kill(work: Path, rng, quick) -> list:
    attempts = []
    src = work / "kill_in"
    src.mkdir()
    for i in range(8):
        (src / f"c{i}.png").write_bytes(png_bytes(cell(i, (90, 100))))
    for k in range(6 if quick else 12):
        out = work / f"kill_out{k}"
        delay = 0.05 + 0.25 * k

        def fn(out=out, delay=delay):
            # kill a run after `delay` s, remember what it finished, resume, compare
            kill_cli_after(["segment", str(src), "--out", str(out), *BASELINE], delay)
            finished = hash_files(out.glob("*_labels.png")) if out.exists() else {}
            finished.update(hash_files(p for p in out.glob("*.png") if (out / p.name.replace(
                "_heatmap", "_labels").replace("_overlay", "_labels")).exists()) if out.exists() else {})
            from napari_cervseg.cli import main

            rc = main(["segment", str(src), "--out", str(out), *BASELINE])
            err = sys.stderr.getvalue()
            status, detail = classify_cli(rc, err)
            changed = [p for p, h in finished.items() if hash_files([p]).get(p) != h]
            if changed:
                return "lost", f"finished outputs changed by the resume: {changed[:3]}"
            n = len(list(out.glob("*_labels.png")))
            leftovers = [p.name for p in out.iterdir() if ".tmp" in p.name or p.name == ".cervseg.lock"]
            if n != 8 or leftovers:
                return "lost", f"{n} of 8 labels after the resume; left: {leftovers[:3]}"
            return status, f"{len(finished)} files kept byte for byte; {detail}"
        attempts.append((f"SIGKILL after {delay:.2f} s, then resume", fn, 180, {"out": out}))
    return attempts


def cat_concurrent(work: Path, rng, quick) -> list:
    attempts = []
    src = work / "conc_in"
    src.mkdir()
    for i in range(6):
        (src / f"c{i}.png").write_bytes(png_bytes(cell(i, (90, 100))))
    for k in range(4 if quick else 8):
        out = work / f"conc_out{k}"
        stagger = 0.1 * k

        def fn(out=out, stagger=stagger):
            import csv

            pids = []
            for j in range(2):
                errfile = out.parent / f"{out.name}.err{j}"
                pid = os.fork()
                if pid == 0:
                    fh = open(errfile, "w")  # noqa: SIM115 - the child exits below
                    sys.stderr = fh
                    rc = 3
                    try:
                        from napari_cervseg.cli import main

                        rc = main(["segment", str(src), "--out", str(out), *BASELINE])
                    except BaseException:  # noqa: BLE001
                        traceback.print_exc()
                    finally:
                        fh.close()
                        os._exit(rc)
                pids.append((pid, errfile))
                time.sleep(stagger)
            results = []
            for pid, errfile in pids:
                _, status = os.waitpid(pid, 0)
                results.append((os.waitstatus_to_exitcode(status), errfile.read_text()))
            for rc, err in results:
                if "Traceback" in err or rc not in (0, 2) or (rc == 2 and "in use by another cervseg run" not in err):
                    return "crash", f"rc {rc}: {err[-300:]}"
            rows = list(csv.DictReader((out / "descriptors.csv").open()))
            if len(rows) != 6 or any(not r.get("method") for r in rows):
                return "lost", f"{len(rows)} rows, methods {[r.get('method') for r in rows]}"
            refused = sum(rc == 2 for rc, _ in results)
            return "ok", f"{refused} of 2 runs refused (folder in use); 6 rows complete"
        attempts.append((f"two runs on one --out, {stagger:.1f} s apart", fn, 180, {"out": out}))
    return attempts


def cat_known_answers(work: Path, rng, quick) -> list:
    """Silently wrong answers (rc 0, no warning) are counted as crashes: each attempt knows the
    right outcome (the colours read, the number of inputs, a refusal, a note)."""
    import tifffile
    from PIL import Image

    folder = work / "known"
    folder.mkdir()
    attempts = []

    def expect(name, check):
        def fn():
            ok, detail = check()
            return ("ok" if ok else "crash"), detail
        attempts.append((name, fn, 60, {}))

    for seed in range(3 if quick else 6):
        rgb = cell(seed, (60 + seed, 70))
        planar = folder / f"planar{seed}.tif"
        tifffile.imwrite(planar, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
        cmyk = folder / f"cmyk{seed}.jpg"
        Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=98)
        five = folder / f"five{seed}.tif"
        tifffile.imwrite(five, np.zeros((40 + seed, 30, 5), np.uint8), photometric="minisblack", planarconfig="contig")

        def planar_check(planar=planar, rgb=rgb):
            from napari_cervseg.io.images import read_image
            from napari_cervseg.workflows.batch import expand_inputs

            n = len(list(expand_inputs([planar])))
            got = read_image(planar)
            return n == 1 and np.array_equal(got, rgb), f"{n} input(s), read as {got.shape}"

        def cmyk_check(cmyk=cmyk, rgb=rgb):
            from napari_cervseg.io.images import read_image, to_rgb_uint8

            got, _ = to_rgb_uint8(read_image(cmyk))
            err = float(np.abs(got.astype(int) - rgb).mean()) if got.shape == rgb.shape else 999
            return err < 6, f"mean colour error {err:.1f} (inverted: ~100)"

        def five_check(five=five):
            from napari_cervseg.io.images import ImageError, read_image, to_rgb_uint8
            from napari_cervseg.workflows.batch import expand_inputs

            n = len(list(expand_inputs([five])))
            try:
                to_rgb_uint8(read_image(five))
            except ImageError as exc:
                return n == 1 and "channels" in str(exc), f"{n} input(s), refused: {str(exc)[:80]}"
            return False, f"{n} input(s), accepted"

        expect(f"planar RGB TIFF {seed} is one colour image", planar_check)
        expect(f"CMYK JPEG {seed} in its true colours", cmyk_check)
        expect(f"5-channel TIFF {seed} refused by name", five_check)

    def labels_checks():
        from napari_cervseg.measure.descriptors import measure

        base = np.zeros((120, 120), np.uint8)
        base[10:110, 10:110] = 1
        base[15:25, 15:25] = 2
        two = base.copy()
        two[95:105, 95:105] = 2
        row = measure(two)
        ok = row["nucleus_major_axis"] < 15 and row["nucleus_regions"] == 2 and row["measure_notes"]
        try:
            measure(np.where(base == 2, 1.5, base.astype(float)))
            return False, "a 1.5 label was measured"
        except ValueError:
            pass
        return bool(ok), f"two nuclei: major axis {row['nucleus_major_axis']:.1f} px, note: {row['measure_notes'][:60]}"
    expect("measure: two nuclei, fractional labels", labels_checks)

    def kept_checks():
        import csv

        import cv2

        from napari_cervseg.workflows.batch import BatchConfig, expand_inputs, run_batch

        d = folder / "kept_in"
        d.mkdir()
        for i in range(2):
            (d / f"k{i}.png").write_bytes(png_bytes(cell(i)))
        out = folder / "kept_out"
        config = BatchConfig(model=None, method="colour-baseline")
        run_batch(expand_inputs([d]), out, config)
        a = cv2.imread(str(out / "k0_labels.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / "k0_labels.png"), cv2.cvtColor(a, cv2.COLOR_GRAY2BGR))
        b = cv2.imread(str(out / "k1_labels.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / "k1_labels.png"), cv2.resize(b, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
        run_batch(expand_inputs([d]), out, config)
        rows = {r["image"]: r for r in csv.DictReader((out / "descriptors.csv").open())}
        ok = set(rows) == {"k0", "k1"} and rows["k1"]["measure_notes"] and rows["k0"]["measure_notes"]
        return bool(ok), f"rows {sorted(rows)}; notes: {[r.get('measure_notes', '')[:40] for r in rows.values()]}"
    expect("kept labels saved as RGB / resized 2x: measured with a note", kept_checks)
    return attempts


def small_field(seed: int, shape=(220, 300)) -> np.ndarray:
    """A field of 3-4 round stained cells on a slide (some overlapping), for the field cases."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = np.full((h, w, 3), 228, np.float32)
    rr, cc = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(3, 5))):
        cy, cx = rng.uniform(45, h - 45), rng.uniform(45, w - 45)
        r = rng.uniform(28, 40)
        body = (rr - cy) ** 2 + (cc - cx) ** 2 < r ** 2
        img[body] *= np.array([0.8, 0.72, 0.86], np.float32)
        nucleus = (rr - cy) ** 2 + (cc - cx) ** 2 < (r * rng.uniform(0.25, 0.45)) ** 2
        img[nucleus] = np.array([70, 50, 110], np.float32) + rng.normal(0, 3, 3)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


#: what a careless user does to a field's outputs before a re-run (issue 26)
FIELD_EDITS = ["erase a cell (other program)", "erase a cell (our writer) + delete labels", "labels cut to 0 bytes",
               "swap ids in cells and nuclei", "swap ids in cells only", "delete nuclei", "delete cells",
               "resize cells and nuclei", "edit labels only", "garbage bytes in cells", "cells saved as colour",
               "nucleus id without a cell", "uint16 copy of the input", "float copy of the input"]


def cat_fields(work: Path, rng, quick) -> list:
    """A field's outputs edited as a careless user would, then a re-run (issue 26): the user's
    edited files must survive byte for byte, and whatever does not add up must be measured right
    or named (a note in the rows, or a clean refusal): silently wrong counts as a crash."""
    import csv

    import cv2

    attempts = []
    reps = 5 if quick else 15
    for k in range(reps * len(FIELD_EDITS)):
        edit = FIELD_EDITS[k % len(FIELD_EDITS)]
        seed = 100 + k
        d = work / f"field{k}"
        (d / "in").mkdir(parents=True)
        (d / "in" / "f.png").write_bytes(png_bytes(small_field(seed)))
        args = ["segment", str(d / "in"), "--out", str(d / "out"), "--field", "yes", "--finder", "classic",
                *BASELINE, "--workers", "1", "--quiet"]

        def fn(d=d, edit=edit, args=args, seed=seed):
            from napari_cervseg.cli import main
            from napari_cervseg.io.images import write_png_atomic

            out = d / "out"
            if main(args) != 0:
                return "crash", "the first run failed"
            cells = cv2.imread(str(out / "f_cells.png"), cv2.IMREAD_UNCHANGED)
            nuclei = cv2.imread(str(out / "f_nuclei.png"), cv2.IMREAD_UNCHANGED)
            n = int(cells.max())
            if n < 2:
                return "ok", f"only {n} cell(s) found: nothing to edit"
            kept: list[Path] = []  # the user's files, which must survive byte for byte
            expect_rows, expect_note, expect_fail = None, None, None
            rerun, copy_run = list(args), False
            if edit.startswith("erase a cell"):
                cells[cells == 1] = 0
                nuclei[nuclei == 1] = 0
                if "our writer" in edit:
                    write_png_atomic(out / "f_cells.png", cells)
                    write_png_atomic(out / "f_nuclei.png", nuclei)
                    (out / "f_labels.png").unlink()
                else:
                    cv2.imwrite(str(out / "f_cells.png"), cells)
                    cv2.imwrite(str(out / "f_nuclei.png"), nuclei)
                kept, expect_rows = [out / "f_cells.png", out / "f_nuclei.png"], n - 1
            elif edit == "labels cut to 0 bytes":
                cells[cells == 2] = 0
                cv2.imwrite(str(out / "f_cells.png"), cells)
                (out / "f_labels.png").write_bytes(b"")
                kept, expect_rows, expect_note = [out / "f_cells.png", out / "f_nuclei.png"], n - 1, "missing or empty"
            elif edit.startswith("swap ids"):
                for arr in ((cells, nuclei) if edit.endswith("nuclei") else (cells,)):
                    a, b = arr == 1, arr == 2
                    arr[a], arr[b] = 2, 1
                cv2.imwrite(str(out / "f_cells.png"), cells)
                cv2.imwrite(str(out / "f_nuclei.png"), nuclei)
                kept, expect_rows = [out / "f_cells.png", out / "f_nuclei.png"], n
                if edit.endswith("only"):
                    expect_note = "no nucleus with id"
            elif edit == "delete nuclei":
                (out / "f_nuclei.png").unlink()
                kept, expect_rows, expect_note = [out / "f_cells.png"], n, "is missing: no nucleus"
            elif edit == "delete cells":
                (out / "f_cells.png").unlink()
                kept, expect_fail = [out / "f_nuclei.png"], "f_cells.png is missing"
            elif edit == "resize cells and nuclei":
                for name, arr in (("f_cells.png", cells), ("f_nuclei.png", nuclei)):
                    cv2.imwrite(str(out / name), cv2.resize(arr, (arr.shape[1] // 2, arr.shape[0] // 2),
                                                            interpolation=cv2.INTER_NEAREST))
                kept, expect_rows, expect_note = [out / "f_cells.png", out / "f_nuclei.png"], None, "resized labels"
            elif edit == "edit labels only":
                labels = cv2.imread(str(out / "f_labels.png"), cv2.IMREAD_UNCHANGED)
                labels[labels == 2] = 1
                cv2.imwrite(str(out / "f_labels.png"), labels)
                kept, expect_rows, expect_note = [out / "f_labels.png"], n, "differs from"
            elif edit == "garbage bytes in cells":
                (out / "f_cells.png").write_bytes(bytes(np.random.default_rng(seed).integers(0, 256, 500,
                                                                                            dtype=np.uint8)))
                kept, expect_fail = [out / "f_cells.png"], ""
            elif edit == "cells saved as colour":
                cv2.imwrite(str(out / "f_cells.png"), cv2.applyColorMap((cells * 40).astype(np.uint8),
                                                                        cv2.COLORMAP_JET))
                kept, expect_fail = [out / "f_cells.png"], "instance labels"
            elif edit == "nucleus id without a cell":
                nuclei[nuclei == 1] = 250
                cv2.imwrite(str(out / "f_nuclei.png"), nuclei)
                kept, expect_rows, expect_note = [out / "f_nuclei.png"], n, "outside the cell of the same id"
            elif edit in ("uint16 copy of the input", "float copy of the input"):
                import tifffile

                rgb = cv2.cvtColor(cv2.imread(str(d / "in" / "f.png")), cv2.COLOR_BGR2RGB)
                copy = rgb.astype(np.uint16) if edit.startswith("uint16") else rgb.astype(np.float32)
                (d / "in2").mkdir()
                tifffile.imwrite(d / "in2" / "f.tif", copy)
                copy_run = True
                rerun = ["segment", str(d / "in2"), "--out", str(d / "out2"), "--field", "yes", "--finder",
                         "classic", *BASELINE, "--workers", "1", "--quiet"]
            before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept}
            rc = main(rerun)
            changed = [p.name for p, h in before.items() if not p.exists()
                       or hashlib.sha256(p.read_bytes()).hexdigest() != h]
            if changed:
                return "lost", f"{edit}: the user's {changed} changed or lost"
            if copy_run:  # the copy must give the 8-bit original's cells, not stretched ones
                a = cv2.imread(str(out / "f_cells.png"), cv2.IMREAD_UNCHANGED)
                b = cv2.imread(str(d / "out2" / "f_cells.png"), cv2.IMREAD_UNCHANGED)
                same = rc == 0 and b is not None and np.array_equal(a, b)
                return ("ok" if same else "crash"), f"{edit}: cells {'as' if same else 'NOT as'} the 8-bit run's"
            summary = (out / "summary.json").read_text()
            if expect_fail is not None:
                good = rc == 1 and expect_fail in summary and '"failed"' in summary
                return ("ok" if good else "crash"), f"{edit}: rc {rc}, refused {'by name' if good else 'WRONGLY'}"
            rows = [r for r in csv.DictReader((out / "descriptors.csv").open()) if r.get("image") == "f"]
            if rc != 0:
                return "crash", f"{edit}: rc {rc}"
            if expect_rows is not None and len(rows) != expect_rows:
                return "crash", f"{edit}: {len(rows)} rows, expected {expect_rows}"
            if expect_note and not any(expect_note in (r.get("warnings") or "") for r in rows):
                return "crash", f"{edit}: no note '{expect_note}' (silently wrong)"
            return "ok", f"{edit}: {len(rows)} rows" + (f", noted '{expect_note}'" if expect_note else "")
        attempts.append((f"field {k}: {edit}", fn, 120, {}))
    return attempts


def cat_segmenter_cards(work: Path, rng, quick) -> list:
    """Segmenter (and cell finder) files with broken cards: each must be refused with a message
    that names the card, never a traceback or a huge allocation (issue 26 item 4)."""
    import shutil

    from napari_cervseg.segment.finder import bundled_finders
    from napari_cervseg.segment.student import bundled_segmenters

    attempts = []
    for kind, source in (("segmenter", bundled_segmenters()["default"]), ("finder", bundled_finders()["default"])):
        good = json.loads(source.with_suffix(".json").read_text())
        cards = {"invalid JSON": "{not json", "a JSON list": "[1, 2]", "a number": "3", "empty": "",
                 "widths of text": json.dumps({**good, "widths": ["a", "b"]}),
                 "widths huge": json.dumps({**good, "widths": [16, 32, 64, 1000000]}),
                 "widths negative": json.dumps({**good, "widths": [-1, 8]}),
                 "widths a string": json.dumps({**good, "widths": "16,32"}),
                 "another architecture": json.dumps({**good, "architecture": "resnet"}),
                 "binary bytes": "\x00\xff\xfe"}
        if kind == "segmenter":
            cards["input size text"] = json.dumps({**good, "input_size": "big"})
        else:
            cards["rays zero"] = json.dumps({**good, "n_rays": 0})
        for label, text in cards.items():
            d = work / f"{kind}-{len(attempts)}"
            d.mkdir()
            path = d / "m.safetensors"
            shutil.copy(source, path)
            path.with_suffix(".json").write_bytes(text.encode("latin-1"))

            def fn(path=path, kind=kind):
                from napari_cervseg.segment.finder import FinderError, load_finder
                from napari_cervseg.segment.student import SegmenterError, load_segmenter

                try:
                    (load_segmenter if kind == "segmenter" else load_finder)(path)
                except (SegmenterError, FinderError) as exc:
                    named = "m.json" in str(exc)
                    return ("clean" if named else "crash"), str(exc)[:200]
                return "crash", "a broken card was accepted"
            attempts.append((f"{kind} card: {label}", fn, 60, {}))
    return attempts


def small_slide(path: Path, seed: int = 0, shape=(700, 900)) -> Path:
    """A small pyramidal OME-TIFF of synthetic cells (3 levels, 256 px tiles)."""
    from napari_cervseg.io.slides import write_pyramid

    rng = np.random.default_rng(seed)
    image = np.full(tuple(shape) + (3,), 226, np.uint8)
    for y in range(70, shape[0] - 70, 160):
        for x in range(70, shape[1] - 70, 160):
            c = cell(int(rng.integers(1 << 30)), (120, 130))
            image[y - 60:y + 60, x - 65:x + 65] = c
    return write_pyramid(path, lambda y0, x0, y1, x1: image[y0:y1, x0:x1], shape, tile=256, n_levels=3)


SLIDE_BASE = ["--model", "none", "--method", "colour-baseline", "--operating-point", "argmax", "--workers", "1",
              "--tile", "256", "--margin", "96", "--gallery", "2", "--quiet"]


def cat_slides(work: Path, rng, quick) -> list:
    """`cervseg slide` as a careless user runs it: broken and odd slide files, bad options, output
    folders holding someone else's files or another run, a damaged tile record, a kill and a
    resume. Every attempt must run, or be refused by name, and leave the user's files alone."""
    import tifffile

    attempts = []
    good = small_slide(work / "good.ome.tif")
    data = good.read_bytes()
    odd = work / "odd"
    odd.mkdir()
    (odd / "cut.ome.tif").write_bytes(data[: len(data) // 2])
    (odd / "empty.ome.tif").write_bytes(b"")
    (odd / "png.tif").write_bytes(png_bytes(cell(1)))
    (odd / "text.svs").write_bytes(b"not a slide at all\n" * 50)
    (odd / "v.mrxs").write_bytes(b"x")
    tifffile.imwrite(odd / "stack.tif", np.zeros((3, 300, 300), np.uint8), metadata={"axes": "ZYX"})
    tifffile.imwrite(odd / "grey16.tif", (cell(2, (300, 360))[..., 0].astype(np.uint16) * 200))
    tifffile.imwrite(odd / "rgba.tif", np.dstack([cell(3, (300, 360)), np.full((300, 360), 255, np.uint8)]))
    tifffile.imwrite(odd / "plain.tif", cell(4, (300, 360)))
    for name in ("cut.ome.tif", "empty.ome.tif", "png.tif", "text.svs", "v.mrxs", "stack.tif", "grey16.tif",
                 "rgba.tif", "plain.tif", "missing.ome.tif"):
        out = work / f"out-{name}"
        attempts.append((f"slide file: {name}", cli(["slide", odd / name, "--out", out, *SLIDE_BASE]), 120,
                         {"user_files": [odd / name] if (odd / name).exists() else []}))
    attempts.append(("slide file: a folder", cli(["slide", odd, "--out", work / "out-folder", *SLIDE_BASE]), 60,
                     {"user_files": list(odd.iterdir())}))
    for label, extra in (("--tile 10", ["--tile", "10"]), ("--margin -5", ["--margin", "-5"]),
                         ("--workers 0", ["--workers", "0"]), ("--operating-point 2", ["--operating-point", "2"]),
                         ("--operating-point high", ["--operating-point", "high"]),
                         ("--model missing.safetensors", ["--model", str(work / "missing.safetensors")]),
                         ("--pixel-size -1", ["--pixel-size", "-1"]), ("--per-cell all", ["--per-cell", "all"]),
                         ("--scheduler nowhere", ["--scheduler", "tcp://127.0.0.1:9", "--workers", "2"])):
        argv = ["slide", good, "--out", work / f"out-opt{len(attempts)}", *SLIDE_BASE, *extra]
        attempts.append((f"option {label}", cli(argv), 120, {}))
    # output folders a run must not take over
    theirs = work / "theirs"
    theirs.mkdir()
    (theirs / "cells.csv").write_text("patient,count\n7,12\n")
    (theirs / "report.html").write_text("<p>my notes</p>")
    attempts.append(("--out holds the user's cells.csv and report.html", cli(["slide", good, "--out", theirs,
                                                                             *SLIDE_BASE]), 60,
                     {"user_files": [theirs / "cells.csv", theirs / "report.html"]}))
    a_file = work / "a_file.txt"
    a_file.write_text("mine")
    attempts.append(("--out is a file", cli(["slide", good, "--out", a_file, *SLIDE_BASE]), 60,
                     {"user_files": [a_file]}))
    done = work / "done"

    def first_run(done=done):
        from napari_cervseg.cli import main

        rc = main(["slide", str(good), "--out", str(done), *SLIDE_BASE])
        return classify_cli(rc, sys.stderr.getvalue())
    attempts.append(("a run to completion", first_run, 180, {}))
    attempts.append(("the same run again (resumes: nothing to do)", cli(["slide", good, "--out", done, *SLIDE_BASE]),
                     120, {}))
    attempts.append(("the same folder with another --tile", cli(["slide", good, "--out", done, *SLIDE_BASE,
                                                                 "--tile", "512"]), 60, {}))
    other = small_slide(work / "other.ome.tif", seed=5)
    attempts.append(("the same folder with another slide", cli(["slide", other, "--out", done, *SLIDE_BASE]), 60, {}))

    def damaged_tile(done=done):
        # a tile record cut short (a disk that filled up): it is redone, the table complete again
        from napari_cervseg.cli import main

        records = sorted((done / "tiles").glob("r*.json"))
        if not records:
            return "crash", "the first run left no tile records"
        rows_before = (done / "cells.csv").read_text().count("\n")
        records[len(records) // 2].write_text('{"tile": "r00')
        rc = main(["slide", str(good), "--out", str(done), *SLIDE_BASE])
        status, detail = classify_cli(rc, sys.stderr.getvalue())
        rows_after = (done / "cells.csv").read_text().count("\n")
        if rows_after != rows_before:
            return "lost", f"{rows_before - 1} cells before, {rows_after - 1} after redoing a damaged tile"
        return status, f"damaged tile redone; {rows_after - 1} cells as before"
    attempts.append(("a damaged tile record", damaged_tile, 120, {}))

    for k, delay in enumerate((0.5, 1.5, 3.0)[: 2 if quick else 3]):
        out = work / f"killed{k}"

        def killed(out=out, delay=delay):
            kill_cli_after(["slide", str(good), "--out", str(out), *SLIDE_BASE], delay)
            kept = hash_files((out / "tiles").glob("r*.json")) if (out / "tiles").exists() else {}
            from napari_cervseg.cli import main

            rc = main(["slide", str(good), "--out", str(out), *SLIDE_BASE])
            status, detail = classify_cli(rc, sys.stderr.getvalue())
            changed = [p for p, h in kept.items() if hash_files([p]).get(p) != h]
            if changed:
                return "lost", f"finished tiles changed by the resume: {changed[:3]}"
            same = (out / "cells.csv").read_bytes() == (done / "cells.csv").read_bytes()
            if not same:
                return "lost", "the resumed run's table differs from an uninterrupted run's"
            return status, f"{len(kept)} tiles kept byte for byte, table identical; {detail}"
        attempts.append((f"SIGKILL after {delay} s, then resume", killed, 240, {}))
    return attempts


CATEGORIES = {
    "silently wrong answers": cat_known_answers,
    "hostile image files (CLI)": cat_files,
    "odd arrays (segment_cell)": cat_arrays,
    "measure()": cat_measure,
    "CLI option values": cat_options,
    "model files and cards": cat_models,
    "link loops and odd folders": cat_links,
    "files a run must not touch": cat_user_files,
    "full disk": cat_full_disk,
    "kill + resume": cat_kill,
    "concurrent runs": cat_concurrent,
    "fields and their corrections": cat_fields,
    "segmenter and finder cards": cat_segmenter_cards,
    "slides": cat_slides,
}


def check_files(extra: dict, before: dict) -> list[str]:
    """Files lost or damaged by an attempt: user files changed, outputs that do not decode, and
    (for a full-disk attempt) a plain re-run that does not complete or leaves temporary files."""
    problems = []
    for p, h in before.items():
        now = hash_files([p]).get(p)
        if now != h:
            problems.append(f"user file {'changed' if now else 'lost'}: {Path(p).name}")
    out = extra.get("out")
    if out is not None:
        problems += [f"damaged output: {n}" for n in outputs_decode(Path(out))]
    if "rerun" in extra:
        res = run_child(cli(extra["rerun"]), 120)
        n = len(list(Path(out).glob("*_labels.png")))
        leftovers = [p.name for p in Path(out).iterdir() if ".tmp" in p.name]
        if res["status"] != "ok" or n != extra["expect"] or leftovers:
            problems.append(f"re-run after the failure: {res['status']}, {n} of {extra['expect']} labels,"
                            f" temporary files {leftovers[:3]} ({res['detail'][:150]})")
        problems += [f"damaged output after re-run: {n}" for n in outputs_decode(Path(out))]
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer attempts per category (a smoke run)")
    p.add_argument("--only", default=None, help="run only the categories whose name contains this")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--out", default=str(RESULTS / "robustness"))
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)  # no intra-op pool in the parent: forking stays safe
    import napari_cervseg.cli  # noqa: F401 - import once, before the forks
    import napari_cervseg.measure.descriptors  # noqa: F401
    import napari_cervseg.segment.pipeline  # noqa: F401

    # warm up here, once: lazily imported submodules (scikit-image's, OpenCV's) are then shared by
    # every forked child instead of being imported again in each
    from napari_cervseg import segment_cell
    from napari_cervseg.measure.descriptors import measure

    warm = segment_cell(cell(), model=None, method="colour-baseline")
    measure(warm.labels, cell(), pixel_size=0.25)

    rng = random.Random(args.seed)
    cwd_before = set(os.listdir("."))  # nothing may be written where the command runs
    t0 = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="cervseg-robustness-") as tmp:
        work = Path(tmp)
        for cat, make in CATEGORIES.items():
            if args.only and args.only not in cat:
                continue
            cat_dir = work / cat.split()[0].strip("()")
            cat_dir.mkdir()
            attempts = make(cat_dir, rng, args.quick)
            t_cat = time.perf_counter()
            for name, fn, timeout, extra in attempts:
                before = hash_files(extra.get("user_files", []))
                t = time.perf_counter()
                res = run_child(fn, timeout)
                status = res["status"]
                problems = check_files(extra, before) if status != "hang" else []
                stray = set(os.listdir(".")) - cwd_before
                if stray:
                    problems.append(f"wrote into the current folder: {sorted(stray)[:5]}")
                    cwd_before |= stray
                if status == "lost":
                    problems.append(res["detail"])
                    status = "ok"
                records.append({"category": cat, "attempt": name, "status": status, "detail": res["detail"],
                                "files_lost_or_damaged": problems, "seconds": round(time.perf_counter() - t, 3)})
                flag = "" if status in ("ok", "clean") and not problems else "   <-- " + status + " " + "; ".join(problems)
                print(f"[{cat}] {name[:70]!s:72} {status:6} {time.perf_counter() - t:5.1f}s{flag}", flush=True)
            print(f"== {cat}: {len(attempts)} attempts in {time.perf_counter() - t_cat:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    summary = summarise(records, wall, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "attempts": records}, indent=1))
    out.with_suffix(".md").write_text(markdown(summary, records))
    print(markdown(summary, records).split("## Every")[0])
    return 0 if not (summary["totals"]["crash"] or summary["totals"]["hang"] or summary["totals"]["lost_or_damaged"]) else 1


def summarise(records, wall, args) -> dict:
    cats = {}
    for r in records:
        c = cats.setdefault(r["category"], {"attempts": 0, "ok": 0, "clean": 0, "crash": 0, "hang": 0,
                                            "lost_or_damaged": 0})
        c["attempts"] += 1
        c[r["status"]] = c.get(r["status"], 0) + 1
        c["lost_or_damaged"] += bool(r["files_lost_or_damaged"])
    totals = {k: sum(c[k] for c in cats.values()) for k in ("attempts", "ok", "clean", "crash", "hang",
                                                           "lost_or_damaged")}
    return {"categories": cats, "totals": totals, "wall_seconds": round(wall, 1),
            "command": "python benchmarks/bench_robustness.py" + (" --quick" if args.quick else "")
            + (f" --only '{args.only}'" if args.only else ""),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d %H:%M")}


def markdown(summary, records) -> str:
    t = summary["totals"]
    lines = ["# Robustness suite (issue 17)", "",
             (f"`{summary['command']}` on {summary['machine']}, {summary['date']}: **{t['attempts']} attempts,"
             f" {t['crash']} crashes, {t['hang']} hangs, {t['lost_or_damaged']} with files lost or damaged**"
             f" ({summary['wall_seconds']:.0f} s)."), "",
             ("ok = worked (rc 1 with each failed input named cleanly counts here); clean = refused with a"
             " message (ImageError, SegmentationError, ModelError, ValueError, OutputError; CLI rc 2 with"
             " `error:`); crash = a traceback or an unexpected exception type; hang = past its timeout."), "",
             "| category | attempts | ok | clean error | crash | hang | files lost or damaged |",
             "|---|---|---|---|---|---|---|"]
    for cat, c in summary["categories"].items():
        lines.append(f"| {cat} | {c['attempts']} | {c['ok']} | {c['clean']} | {c['crash']} | {c['hang']} |"
                     f" {c['lost_or_damaged']} |")
    lines.append(f"| **total** | **{t['attempts']}** | {t['ok']} | {t['clean']} | **{t['crash']}** | **{t['hang']}** |"
                 f" **{t['lost_or_damaged']}** |")
    bad = [r for r in records if r["status"] in ("crash", "hang") or r["files_lost_or_damaged"]]
    lines += ["", "## Problems", ""]
    lines += [f"- [{r['category']}] {r['attempt']}: {r['status']} {r['detail'][:300]}"
              f" {'; '.join(r['files_lost_or_damaged'])}" for r in bad] or ["None."]
    lines += ["", "## Every attempt", "", "| category | attempt | outcome | detail |", "|---|---|---|---|"]
    for r in records:
        detail = (r["detail"] or "").replace("|", "/").replace("\n", " ")[:160]
        name = r["attempt"].replace("|", "/").replace("\n", "\\n")[:90]
        lines.append(f"| {r['category']} | {name} | {r['status']} | {detail} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
