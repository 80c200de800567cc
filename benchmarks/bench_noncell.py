"""A verdict only on a cell (issue 16, item 1): how often real held-out cells and non-cell inputs
get "no verdict" from ``segment_cell`` with the bundled model.

    python benchmarks/bench_noncell.py            # -> benchmarks/results/noncell.{json,md}
    python benchmarks/bench_noncell.py --quick    # one seed per non-cell kind, 30 real cells each

Real cells: the bundled model's Herlev **test** split (its card; never used to train it or to set
a threshold) and, separately, the cells of the ISBI development fields cut out as tight as a Herlev
crop (``read_isbi_cell_crops``: grey cells from another laboratory). Non-cells, several seeds per
kind: random noise (5 / 32 / 128 / 256 px, uint8 colour and grey), blank slides (constant, and
constant + slight noise, several colours), rendered text (``cv2.putText`` on white / grey),
debris-like crops (background patches cut from the Herlev and ISBI field images away from every
annotated cell, tiny dark specks, blurred blobs, scratch lines) and other non-cells (colour
gradients, a checkerboard).

Every input goes through ``segment_cell`` (default method) as a user's would; "flagged" means
``result.judgeable`` is False. The column "stat-free checks" is what a model without training-cell
statistics (a wrapped network, the synthetic test model) would flag on the same input and labels:
``assess(None, image, labels)``. The thresholds were set by ``cervseg verdict-stats`` on the
validation split; nothing here tunes them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

from napari_cervseg import load_model, segment_cell
from napari_cervseg.classify.applicability import assess
from napari_cervseg.io.datasets import default_data_root, read_dataset, read_isbi_cell_crops

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLIDE = (226, 220, 232)  # a pale slide background
COLOURS = {"white": (255, 255, 255), "slide": SLIDE, "grey": (128, 128, 128), "black": (0, 0, 0),
           "pink": (230, 170, 200)}


# ----------------------------------------------------------------------------------------------
# non-cell inputs


def noise(size, colour, rng):
    if colour:
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.repeat(rng.integers(0, 256, (size, size, 1), dtype=np.uint8), 3, 2)


def blank(colour, sigma, rng, size=(110, 120)):
    img = np.full((*size, 3), COLOURS[colour], np.float32)
    if sigma:
        img += rng.normal(0, sigma, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def text(background, rng):
    h, w = int(rng.integers(60, 140)), int(rng.integers(120, 260))
    img = np.full((h, w, 3), COLOURS[background], np.uint8)
    words = ["Specimen 42", "Pap", "CIN 2", "slide 7B", "NORMAL", "x40"]
    word = words[int(rng.integers(len(words)))]
    scale = float(rng.uniform(0.8, 1.6))
    cv2.putText(img, word, (5, h // 2 + 10), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 2, cv2.LINE_AA)
    return img


def specks(rng, size=64):
    img = np.full((size, size, 3), SLIDE, np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        c = tuple(int(v) for v in rng.integers(8, size - 8, 2))
        cv2.circle(img, c, int(rng.integers(1, 4)), (int(rng.integers(30, 90)), 30, int(rng.integers(60, 120))), -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def blob(rng, size=96):
    img = np.full((size, size, 3), SLIDE, np.float32)
    mask = np.zeros((size, size), np.float32)
    c = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
    axes = tuple(int(v) for v in rng.integers(8, 22, 2))
    cv2.ellipse(mask, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), float(rng.uniform(5, 10)))[..., None]
    dark = np.array([rng.uniform(60, 120), rng.uniform(40, 90), rng.uniform(100, 160)], np.float32)
    img = img * (1 - mask) + dark * mask + rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def scratches(rng, size=96):
    img = np.full((size, size, 3), SLIDE, np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        p0 = tuple(int(v) for v in rng.integers(0, size, 2))
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        shade = int(rng.integers(40, 140))
        cv2.line(img, p0, p1, (shade, shade, shade + 20), int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def gradient(rng, size=100):
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size)[None, :, None]
    return np.repeat((a * (1 - t) + b * t), size, 0).astype(np.uint8)


def checkerboard(rng, size=96):
    k = int(rng.integers(6, 16))
    yy, xx = np.mgrid[:size, :size]
    on = ((yy // k + xx // k) % 2).astype(bool)
    img = np.full((size, size, 3), 235, np.uint8)
    img[on] = (int(rng.integers(0, 120)),) * 3
    return img


def background_patches(folder: Path, n: int, rng, size=96, gap=12) -> list[np.ndarray]:
    """``n`` patches of the field images of ``folder`` (images/, cells/*.tif) that no annotated cell
    comes within ``gap`` px of."""
    import tifffile

    from napari_cervseg.io.images import read_image, to_rgb_uint8

    stacks = sorted((folder / "cells").glob("*.tif"))
    patches, tries = [], 0
    while len(patches) < n and tries < 5000:
        tries += 1
        stack = stacks[int(rng.integers(len(stacks)))]
        pages = tifffile.imread(stack)
        pages = pages[None] if pages.ndim == 2 else pages
        occupied = cv2.dilate((pages > 0).any(0).astype(np.uint8), np.ones((2 * gap + 1,) * 2, np.uint8))
        h, w = occupied.shape
        r, c = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
        if occupied[r:r + size, c:c + size].any():
            continue
        image = to_rgb_uint8(read_image(folder / "images" / f"{stack.stem}.png"))[0]
        patches.append(image[r:r + size, c:c + size].copy())
    return patches


def non_cells(seeds) -> dict[str, list[np.ndarray]]:
    kinds: dict[str, list[np.ndarray]] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for size in (5, 32, 128, 256):
            kinds.setdefault(f"noise {size}x{size} colour", []).append(noise(size, True, rng))
            kinds.setdefault(f"noise {size}x{size} grey", []).append(noise(size, False, rng))
        for colour in COLOURS:
            kinds.setdefault("blank slide, constant", []).append(blank(colour, 0, rng))
            kinds.setdefault("blank slide + slight noise (sigma 3)", []).append(blank(colour, 3, rng))
        for background in ("white", "grey"):
            kinds.setdefault(f"text on {background}", []).append(text(background, rng))
        kinds.setdefault("debris: tiny dark specks", []).append(specks(rng))
        kinds.setdefault("debris: blurred blob", []).append(blob(rng))
        kinds.setdefault("debris: scratch lines", []).append(scratches(rng))
        kinds.setdefault("other: colour gradient", []).append(gradient(rng))
        kinds.setdefault("other: checkerboard", []).append(checkerboard(rng))
        for name, folder in (("Herlev fields", SHARED / "fields-herlev-dev"), ("ISBI fields", SHARED / "fields-isbi-dev")):
            if (folder / "cells").is_dir():
                kinds.setdefault(f"debris: background patch, {name}", []).extend(background_patches(folder, 2, rng))
    return kinds


# ----------------------------------------------------------------------------------------------


def judge(model, image) -> dict:
    result = segment_cell(image, model=model)
    free = assess(None, image, result.labels)
    return {"flagged": not result.judgeable, "reasons": list(result.not_judgeable),
            "stat_free_flagged": not free.judgeable, "stat_free_reasons": list(free.reasons),
            "predicted_class": result.predicted_class,
            "p_abnormal": result.probabilities.get("abnormal") if result.probabilities else None,
            "scores": dict(result.applicability.get("scores", {}))}


def tally(rows: list[dict]) -> dict:
    n = len(rows)
    return {"n": n, "flagged": sum(r["flagged"] for r in rows),
            "share_flagged": round(sum(r["flagged"] for r in rows) / n, 4) if n else None,
            "stat_free_flagged": sum(r["stat_free_flagged"] for r in rows),
            "reasons": dict(Counter(x for r in rows for x in r["reasons"]).most_common()),
            "called_a_class_anyway": sum(r["predicted_class"] is not None for r in rows) if n else 0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds per non-cell kind")
    p.add_argument("--quick", action="store_true", help="one seed, 30 real cells per set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "noncell"))
    p.add_argument("--model", default="default", help="a bundled model name or a classifier file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model, device="cpu")
    block = model.card.get("applicability")
    if not block:
        sys.exit("the bundled model has no training-cell statistics: run cervseg verdict-stats default --data ...")
    root = default_data_root()
    if root is None:
        sys.exit("no Herlev data (../shared/data/herlev)")
    test_names = set(model.card["training"]["split"]["test"])
    herlev = [s for s in read_dataset(root) if s.name in test_names]
    isbi = read_isbi_cell_crops(SHARED / "fields-isbi-dev") if (SHARED / "fields-isbi-dev").is_dir() else []
    seeds = [0] if args.quick else list(range(args.seeds))
    if args.quick:
        herlev, isbi = herlev[:: max(1, len(herlev) // 30)][:30], isbi[:30]
    real = {"Herlev test split (held out)": [(s.name, s.load_image()) for s in herlev],
            "ISBI development cells (grey, another lab)": [(c.name, c.image) for c in isbi]}
    rows: dict[str, list[dict]] = {}
    for kind, items in real.items():
        rows[kind] = [{"name": name, **judge(model, im)} for name, im in items]
        print(kind, tally(rows[kind]), flush=True)
    for kind, images in non_cells(seeds).items():
        rows[kind] = [{"name": f"{kind} #{i}", "shape": list(im.shape), **judge(model, im)} for i, im in enumerate(images)]
        print(kind, tally(rows[kind]), flush=True)
    real_kinds = list(real)
    other = [k for k in rows if k not in real_kinds]
    all_non = [r for k in other for r in rows[k]]
    report = {
        "command": ("python benchmarks/bench_noncell.py" + (" --quick" if args.quick else "")
                    + (f" --seeds {args.seeds}" if args.seeds != 3 and not args.quick else "")
                    + (f" --model {args.model} --out {args.out}" if args.model != "default" else "")),
        "model": "default (bundled)" if args.model == "default" else args.model,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}",
        "seconds": round(time.perf_counter() - t0, 1),
        "method": inspect.signature(segment_cell).parameters["method"].default,
        "seeds": seeds,
        "thresholds": {"feature_distance": block["features"]["threshold"], "colour_distance": block["colours"]["threshold"],
                       "rule": block["rule"], "set_by": block.get("command")},
        "real": {k: tally(rows[k]) for k in real_kinds},
        "non_cells": {k: tally(rows[k]) for k in other},
        "non_cells_total": tally(all_non),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _pct(t):
    return f"{t['flagged']} / {t['n']} ({100 * t['flagged'] / t['n']:.1f} %)" if t["n"] else "-"


def markdown(r: dict) -> str:
    th = r["thresholds"]
    lines = [
        "# A verdict only on a cell: real cells and non-cells flagged (issue 16, item 1)", "",
        (f"`{r['command']}` on {r['machine']}, {r['date']} ({r['seconds']} s; timings are not the point and"
         " were taken on a shared machine). Model: "
         f"`{r.get('model', 'default')}`; method: `{r['method']}`; non-cell seeds {r['seeds']}."), "",
        ("Flagged = `segment_cell(...).judgeable` is False (no class called). Thresholds from the model card,"
         f" set by `{th['set_by']}`: feature distance > {th['feature_distance']:.2f}, colour distance >"
         f" {th['colour_distance']:.2f}; rule: {th['rule']}. Nothing here tuned them. Stat-free = what a model"
         " without training-cell statistics flags (too small, no contrast, no cell found)."), "",
        "## Real cells (want: near 0)", "",
        "| cells | flagged | stat-free flagged | reasons |", "|---|---|---|---|",
    ]
    for k, t in r["real"].items():
        lines.append(f"| {k} | {_pct(t)} | {t['stat_free_flagged']} | {_reasons(t)} |")
    lines += ["", "## Non-cells (want: near 1)", "",
              "| kind | flagged | stat-free flagged | reasons |", "|---|---|---|---|"]
    for k, t in r["non_cells"].items():
        lines.append(f"| {k} | {_pct(t)} | {t['stat_free_flagged']} | {_reasons(t)} |")
    t = r["non_cells_total"]
    lines.append(f"| **all non-cells** | **{_pct(t)}** | {t['stat_free_flagged']} | {_reasons(t)} |")
    return "\n".join(lines) + "\n"


def _reasons(t):
    return ", ".join(f"{k} {v}" for k, v in t["reasons"].items()) or "-"


if __name__ == "__main__":
    raise SystemExit(main())
