"""Fields of view: how well `segment_field` finds, segments and classifies every cell.

    .venv/bin/python benchmarks/bench_fields.py [--sets fields-herlev-dev fields-isbi-dev] [--method M]
        [--limit N] [--big 10000]

Data: ../shared/data/fields-herlev-dev (composed Herlev test-split cells, with classes) and
../shared/data/fields-isbi-dev (ISBI 2014 overlapping cells, grey, no classes). Masks are read
only to score (weak supervision: nothing is fitted to them).

Matching (ISBI 2014 convention): a predicted and a true nucleus pair when their IoU >= 0.5,
one-to-one. Reported: nucleus precision / recall / F1; for pairs, mean nucleus, whole-cell and
cytoplasm Dice against the full (overlapping) true masks; the share of true cells some predicted
cell covers with Dice > 0.7; on Herlev fields the per-cell accuracy and the share of abnormal
cells found and called abnormal; seconds per field and per cell; with --big, the peak memory of a
BIG x BIG slide made of tiled fields. Writes benchmarks/results/fields.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile

from napari_cervseg.segment.settings import DEFAULT_SEGMENT_METHOD

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def match_nuclei(pred_nuclei: np.ndarray, true_pages: np.ndarray) -> list[tuple[int, int]]:
    """(true page, predicted id) pairs with nucleus IoU >= 0.5, one-to-one (IoU > 0.5 is unique;
    at exactly 0.5 the first wins)."""
    pairs, used = [], set()
    for i, page in enumerate(true_pages):
        truth = page == 2
        ids, counts = np.unique(pred_nuclei[truth], return_counts=True)
        for k, inter in zip(ids, counts, strict=True):
            if k == 0 or k in used:
                continue
            iou = inter / (truth.sum() + (pred_nuclei == k).sum() - inter)
            if iou >= 0.5:
                pairs.append((i, int(k)))
                used.add(int(k))
                break
    return pairs


def field_set(name: str):
    """(image path, RGB uint8 field, true cell pages (N, H, W)) of each field of a set: a folder, or
    a set of ../shared/data."""
    import cv2
    import tifffile

    root = Path(name) if Path(name).is_dir() else DATA / name
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        pages = tifffile.imread(root / "cells" / f"{path.stem}.tif")
        yield path, rgb, pages[None] if pages.ndim == 2 else pages


def field_images(name: str):
    """(image path, RGB uint8 field, true cell pages or None) of each field of a set, with or
    without masks (a set without ``cells/``, the real unlabelled fields, gives None)."""
    import cv2

    root = Path(name) if Path(name).is_dir() else DATA / name
    if (root / "cells").is_dir():
        yield from field_set(name)
        return
    for path in sorted((root / "images").glob("*.png")):
        yield path, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), None


def extent_mask(result, k: int, shape) -> np.ndarray:
    """Cell k's full extent (overlaps kept) in the field's frame."""
    (r0, c0, r1, c1), mask = result.extent(k)
    full = np.zeros(shape, bool)
    full[r0:r1, c0:c1] = mask
    return full


class FixedScale:
    """The learned finder at one working scale (a development check of its own scale choice)."""

    def __init__(self, finder, scale: float):
        from napari_cervseg.segment.finder import load_finder

        self.finder, self.scale = load_finder(finder), scale

    def find(self, rgb, scale=None):
        return self.finder.find(rgb, self.scale)

    def choose_scale(self, rgb, scale=None):
        return self.scale


def relit(rgb, light):
    """The field under another slide's light: its transmittance (over its own slide colour, found
    without masks) times ``light`` (Beer-Lambert, as the composer lays cells), e.g. the near-white
    background of a scanned slide."""
    from napari_cervseg.segment.cells import slide_colour

    transmittance = rgb.astype(np.float32) / np.maximum(slide_colour(rgb), 1.0).astype(np.float32)
    return np.clip(transmittance * np.asarray(light, np.float32), 0, 255).round().astype(np.uint8)


def evaluate_set(name: str, method: str, limit: int | None, operating_point=None, model="default",
                 finder=None, per_cell="segment", light=None, white_balance=None) -> dict:
    from napari_cervseg import segment_field

    root = Path(name) if Path(name).is_dir() else DATA / name  # a folder, or a set of ../shared/data
    classes = {}
    if (root / "cells.csv").exists():
        with open(root / "cells.csv") as f:
            for row in csv.DictReader(f):
                classes[(row["field"], int(row["page"]))] = row["label"]
    images = sorted((root / "images").glob("*.png"))[:limit]
    tp = fp = fn = 0
    nuc_d, cell_d, cyto_d, covered, n_true = [], [], [], 0, 0
    correct = total_cls = abnormal_true = abnormal_caught = abnormal_found = abnormal_reviewed = 0
    # the "class accuracy of matched cells": only the true cells whose nucleus was found
    matched_correct = matched_cls = normal_matched = normal_called_normal = 0
    labels_cell_d, no_verdict = [], 0
    seconds, n_cells_pred = [], 0
    for path in images:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if light is not None:
            rgb = relit(rgb, light)
        pages = tifffile.imread(root / "cells" / f"{path.stem}.tif")
        pages = pages[None] if pages.ndim == 2 else pages
        t0 = time.perf_counter()
        result = segment_field(rgb, model=model, method=method, operating_point=operating_point, finder=finder,
                               per_cell=per_cell, white_balance=white_balance)
        seconds.append(time.perf_counter() - t0)
        n_cells_pred += result.n_cells
        pairs = match_nuclei(result.nuclei, pages)
        tp += len(pairs)
        fp += result.n_cells - len(pairs)
        fn += len(pages) - len(pairs)
        n_true += len(pages)
        rows = {r["cell_id"]: r for r in result.table}
        no_verdict += sum(r.get("predicted_class") is None for r in result.table)
        shape = result.cells.shape
        extents = {k: extent_mask(result, k, shape) for k in rows}
        for i, k in pairs:
            truth = pages[i]
            nuc_d.append(dice(result.nuclei == k, truth == 2))
            cell_d.append(dice(extents[k], truth > 0))
            labels_cell_d.append(dice(result.cells == k, truth > 0))
            cyto_d.append(dice(extents[k] & (result.nuclei != k), truth == 1))
        for i, page in enumerate(pages):
            if any(dice(e, page > 0) > 0.7 for e in extents.values() if (e & (page > 0)).any()):
                covered += 1
            label = classes.get((path.stem, i))
            if label is None:
                continue
            total_cls += 1
            abnormal_true += label == "abnormal"
            k = dict(pairs).get(i)
            called = rows[k]["predicted_class"] if k is not None else None
            correct += called == label
            if k is not None:
                matched_cls += 1
                matched_correct += called == label
                normal_matched += label == "normal"
                normal_called_normal += label == "normal" and called == "normal"
            abnormal_caught += label == "abnormal" and called == "abnormal"
            abnormal_found += label == "abnormal" and k is not None
            # caught, or listed for review without a verdict (a screener looks at it either way)
            abnormal_reviewed += label == "abnormal" and k is not None and called in ("abnormal", None)
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    out = {
        "fields": len(images), "true_cells": n_true, "predicted_cells": n_cells_pred,
        "nucleus_precision": precision, "nucleus_recall": recall,
        "nucleus_f1": 2 * precision * recall / max(1e-12, precision + recall),
        "pairs": len(nuc_d), "nucleus_dice": float(np.mean(nuc_d)) if nuc_d else None,
        "cell_dice": float(np.mean(cell_d)) if cell_d else None,
        "cell_dice_labels": float(np.mean(labels_cell_d)) if labels_cell_d else None,
        "cells_without_verdict": no_verdict,
        "cytoplasm_dice": float(np.mean(cyto_d)) if cyto_d else None,
        "cells_covered_dice_0.7": covered / max(1, n_true),
        "seconds_per_field": float(np.mean(seconds)), "seconds_per_cell": float(np.sum(seconds) / max(1, n_cells_pred)),
    }
    if total_cls:
        out.update({"cell_accuracy": correct / total_cls, "abnormal_cells": abnormal_true,
                    "cell_accuracy_matched": matched_correct / max(1, matched_cls), "cells_matched_with_class": matched_cls,
                    "normal_matched": normal_matched, "normal_called_normal": normal_called_normal,
                    "abnormal_caught": abnormal_caught / max(1, abnormal_true),
                    "abnormal_found": abnormal_found / max(1, abnormal_true),
                    "abnormal_caught_or_reviewed": abnormal_reviewed / max(1, abnormal_true),
                    "abnormal_called_when_found": abnormal_caught / max(1, abnormal_found)})
    return out


def big_slide_memory(size: int) -> dict:
    """Peak memory (RSS) of segment_field on a size x size slide tiled from the Herlev fields,
    measured in a fresh process."""
    code = f"""
import resource, time, cv2, numpy as np
from pathlib import Path
from napari_cervseg import segment_field
tiles = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(Path({str(DATA / 'fields-herlev-dev' / 'images')!r}).glob('*.png'))]
big = np.empty(({size}, {size}, 3), np.uint8); big[:] = tiles[0][5, 5]
i = 0
for r in range(0, {size} - 768 + 1, 768 * 3):
    for c in range(0, {size} - 1024 + 1, 1024 * 3):
        big[r:r + 768, c:c + 1024] = tiles[i % len(tiles)]; i += 1
t0 = time.perf_counter()
res = segment_field(big)
print(res.n_cells, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cells, seconds, peak_mb = out.stdout.split()
    return {"size": size, "cells": int(cells), "seconds": float(seconds), "peak_rss_mb": float(peak_mb)}


def dev_finder(finder):
    """``--finder``: learned, classic, a file or None as they are; the issue 22 candidates of
    benchmarks/dev/ (hybrid, union[:FILE], multiscale[:FILE], multiscale+classic[:FILE]) as objects."""
    kind, _, path = (finder or "").partition(":")
    if kind not in ("hybrid", "union", "multiscale", "multiscale+classic"):
        return finder
    sys.path.insert(0, str(ROOT / "benchmarks" / "dev"))
    if kind == "hybrid":
        from hybrid_finder import ClassicNucleiLearnedExtents

        return ClassicNucleiLearnedExtents()
    if kind == "union":
        from union_finder import learned_plus_classic

        return learned_plus_classic(path or "default")
    from multiscale_finder import MultiScale, multiscale_plus_classic

    return (MultiScale if kind == "multiscale" else multiscale_plus_classic)(path or "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["fields-herlev-dev", "fields-isbi-dev"])
    parser.add_argument("--method", default=DEFAULT_SEGMENT_METHOD)
    parser.add_argument("--model", default="default", help="the classifier: a bundled name or a file")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--finder", default=None,
                        help="learned, classic, a .safetensors finder, or a dev candidate: hybrid, union[:FILE],"
                             " multiscale[:FILE], multiscale+classic[:FILE] (default: the package's DEFAULT_FINDER)")
    parser.add_argument("--finder-scale", type=float, default=None,
                        help="run the learned finder at this working scale instead of its own choice")
    parser.add_argument("--operating-point", default=None, help="e.g. screening (the model card's threshold)")
    parser.add_argument("--per-cell", default="segment", choices=("segment", "classify"),
                        help="segment_field's per_cell: segment each cell (default) or classify the finder's cell")
    parser.add_argument("--white-balance", default=None,
                        help="segment_field's white_balance for this run: off, into-range, into-range-chroma,"
                             " to-reference (default: the package's for the model)")
    parser.add_argument("--relight", default=None, metavar="R,G,B",
                        help="score every field re-lit by a slide of this colour (a check of colour robustness)")
    parser.add_argument("--big", type=int, default=0, help="also measure a BIG x BIG slide's peak memory")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fields"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    from napari_cervseg.workflows import fields

    if args.white_balance is not None and args.white_balance not in fields.WHITE_BALANCE_MODES:
        parser.error(f"--white-balance: one of {', '.join(fields.WHITE_BALANCE_MODES)}")
    report = {"command": "python " + " ".join(sys.argv), "cpu": platform.processor() or platform.machine(),
              "method": args.method, "operating_point": args.operating_point, "finder": args.finder,
              "per_cell": args.per_cell, "white_balance": fields.white_balance_for(args.model, args.white_balance),
              "relight": args.relight, "sets": {}}
    finder = dev_finder(args.finder)
    if args.finder_scale is not None:
        finder = FixedScale("default" if finder in (None, "learned") else finder, args.finder_scale)
        report["finder_scale"] = args.finder_scale
    for name in args.sets:
        report["sets"][name] = evaluate_set(name, args.method, args.limit, args.operating_point, model=args.model,
                                            finder=finder, per_cell=args.per_cell,
                                            light=None if args.relight is None else
                                            [float(v) for v in args.relight.split(",")],
                                            white_balance=args.white_balance)
        print(name, json.dumps(report["sets"][name], indent=1))
    if args.big:
        report["big_slide"] = big_slide_memory(args.big)
        print(report["big_slide"])
    report["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [f"# Fields of view (`{report['command']}`)", "",
             ("| set | fields | true cells | found | nucleus P | nucleus R | nucleus F1 | nucleus Dice | cell Dice"
              " (extent) | cell Dice (labels) | cytoplasm Dice | covered (Dice>0.7) | accuracy (all true cells) |"
              " accuracy (matched cells) | normal matched cells called normal | abnormal caught |"
              " abnormal caught or without verdict | cells without verdict | s / field | s / cell |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["sets"].items():
        def f(key, r=r):
            v = r.get(key)
            return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
        lines.append(f"| {name} | {r['fields']} | {r['true_cells']} | {r['predicted_cells']} | {f('nucleus_precision')}"
                     f" | {f('nucleus_recall')} | {f('nucleus_f1')} | {f('nucleus_dice')} | {f('cell_dice')}"
                     f" | {f('cell_dice_labels')} | {f('cytoplasm_dice')} | {f('cells_covered_dice_0.7')}"
                     f" | {f('cell_accuracy')} | {f('cell_accuracy_matched')}"
                     f" | {f('normal_called_normal')} of {f('normal_matched')} | {f('abnormal_caught')} ({f('abnormal_called_when_found')} of those"
                     f" found) | {f('abnormal_caught_or_reviewed')} | {f('cells_without_verdict')} | {f('seconds_per_field')}"
                     f" | {f('seconds_per_cell')} |")
    if "big_slide" in report:
        b = report["big_slide"]
        lines += ["", (f"Slide of {b['size']} x {b['size']} px: {b['cells']} cells in {b['seconds']:.0f} s,"
                      f" peak memory {b['peak_rss_mb']:.0f} MB (a fresh process).")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
