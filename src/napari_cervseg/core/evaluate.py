"""Evaluation against ground-truth masks (for measuring only: masks never train or fit anything).

Dice / IoU per class are computed per image and averaged over images ("per image"); the pooled
variant sums intersections and sizes over all images first.
"""

from __future__ import annotations

import time

import numpy as np

from .datasets import Sample
from .metrics import classification_metrics, segmentation_scores
from .models import CLASS_NAMES
from .pipeline import segment_cell
from .xai import classify


def evaluate_segmentation(samples: list[Sample], model, methods, options: dict | None = None,
                          progress=None) -> dict:
    """Segment every sample that has a mask with each method; return scores per method."""
    options = options or {}
    with_mask = [s for s in samples if s.mask_path is not None]
    out = {}
    total = len(with_mask) * len(methods)
    done = 0
    for method in methods:
        per_image, times = [], []
        pooled = {c: {"inter": 0, "pred": 0, "truth": 0, "union": 0} for c in ("nucleus", "cytoplasm")}
        for s in with_mask:
            image, truth = s.load_image(), s.load_mask()
            t0 = time.perf_counter()
            result = segment_cell(image, model=model, method=method, **options.get(method, {}))
            times.append(time.perf_counter() - t0)
            scores = segmentation_scores(result.labels, truth)
            per_image.append({"name": s.name, "group": s.group, **{k: v["dice"] for k, v in scores.items()}})
            for value, cls in ((2, "nucleus"), (1, "cytoplasm")):
                p, t = result.labels == value, truth == value
                pooled[cls]["inter"] += int((p & t).sum())
                pooled[cls]["pred"] += int(p.sum())
                pooled[cls]["truth"] += int(t.sum())
                pooled[cls]["union"] += int((p | t).sum())
            done += 1
            if progress:
                progress(done, total)
        out[method] = summarise(per_image, pooled, times)
        out[method]["per_image"] = per_image
    return out


def summarise(per_image, pooled, times) -> dict:
    def mean_of(key, metric="dice", rows=per_image):
        return float(np.mean([r[key] for r in rows])) if rows else float("nan")

    # per-image lists hold Dice; IoU per image is recomputed from Dice (IoU = D / (2 - D))
    def iou_of(key, rows=per_image):
        return float(np.mean([r[key] / (2 - r[key]) for r in rows])) if rows else float("nan")

    summary = {
        "nucleus": {"dice": mean_of("nucleus"), "iou": iou_of("nucleus")},
        "cytoplasm": {"dice": mean_of("cytoplasm"), "iou": iou_of("cytoplasm")},
        "n_images": len(per_image),
        "seconds_per_image": float(np.median(times)) if times else float("nan"),
    }
    summary["mean"] = {k: (summary["nucleus"][k] + summary["cytoplasm"][k]) / 2 for k in ("dice", "iou")}
    summary["pooled"] = {
        cls: {"dice": 2 * p["inter"] / max(p["pred"] + p["truth"], 1), "iou": p["inter"] / max(p["union"], 1)}
        for cls, p in pooled.items()
    }
    groups = sorted({r["group"] for r in per_image})
    summary["per_group"] = {
        g: {"nucleus_dice": mean_of("nucleus", rows=[r for r in per_image if r["group"] == g]),
            "cytoplasm_dice": mean_of("cytoplasm", rows=[r for r in per_image if r["group"] == g]),
            "n": sum(r["group"] == g for r in per_image)}
        for g in groups
    }
    return summary


def evaluate_classification(samples: list[Sample], model) -> dict:
    y_true, y_pred = [], []
    for s in samples:
        cls, _, _ = classify(model, s.load_image())
        y_true.append(CLASS_NAMES.index(s.label))
        y_pred.append(CLASS_NAMES.index(cls))
    return classification_metrics(y_true, y_pred)
