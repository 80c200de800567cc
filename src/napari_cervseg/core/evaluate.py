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


# ----------------------------------------------------------------------------------------------
# the whole evaluation (cervseg evaluate)

DEFAULT_COMPARISON = (
    "gradcam++",                                   # Algorithm 1, tuned defaults (GMM)
    "gradcam++:grouping=kmeans",
    "gradcam++:grouping=intermeans",
    "gradcam++:grouping=threshold",
    "gradcam++:nucleus_seed=rough,inpaint_nucleus=false,dilation=5",  # the paper's Algorithm 1 literally
    "gradcam++-paper",
    "layercam",
    "ensemble",                                    # median of Grad-CAM, ++, Score-, Eigen-, Layer-CAM
    "lrp-ruleset1",                                # Algorithm 2 with OpenCV inpainting
    "lrp-ruleset1:inpainter=none",                 # Algorithm 2 without inpainting
    "lrp-ruleset2",
    "lrp-ruleset2:inpainter=none",
    "colour-baseline",                             # no explanation
)


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """``"gradcam++:grouping=kmeans,dilation=8"`` -> ("gradcam++", {"grouping": "kmeans", "dilation": 8})."""
    method, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"method spec {spec!r}: expected key=value after ':', got {item!r}")
        options[key.strip()] = _value(value.strip())
    return method.strip(), options


def evaluate(samples: list[Sample], model, methods=DEFAULT_COMPARISON, xai_methods=None, n_xai: int = 60,
             progress=None) -> dict:
    """Classification on every sample, segmentation per method on those with masks, XAI metrics
    (entropy, pixel-flipping AOPC) per explanation method on up to ``n_xai`` samples."""
    from .xai import explain
    from .xai_metrics import heatmap_entropy, pixel_flipping

    report: dict = {"classification": evaluate_classification(samples, model)}
    report["classification"]["n_with_masks"] = sum(s.mask_path is not None for s in samples)
    by_class: dict = {}
    for s in samples:
        by_class.setdefault(s.group, []).append(s)
    segmentation = {}
    for spec in methods:
        method, options = parse_method_spec(spec)
        result = evaluate_segmentation(samples, model, [method], {method: options}, progress)[method]
        result["method"], result["options"] = method, options
        segmentation[spec] = result
    report["segmentation"] = segmentation
    if segmentation:
        best = max(segmentation, key=lambda k: segmentation[k]["mean"]["dice"])
        report["best_method"] = {"name": best, "mean_dice": segmentation[best]["mean"]["dice"]}
    xai_methods = xai_methods if xai_methods is not None else sorted(
        {parse_method_spec(m)[0] for m in methods} - {"colour-baseline"})
    xai = {}
    # evenly spaced over the list, so every Herlev class (the manifest is ordered by class) is in
    subset = samples[:: max(1, len(samples) // max(n_xai, 1))][:n_xai]
    for method in xai_methods:
        per_class: dict = {"normal": [], "abnormal": []}
        aopcs = []
        for s in subset:
            image = s.load_image()
            e = explain(model, image, method=method)
            per_class[s.label].append(heatmap_entropy(e.heatmap))
            aopcs.append(pixel_flipping(model, image, e.heatmap, target=e.target_class)["aopc"])
        all_h = per_class["normal"] + per_class["abnormal"]
        xai[method] = {"entropy": float(np.mean(all_h)),
                       "entropy_normal": float(np.mean(per_class["normal"])) if per_class["normal"] else None,
                       "entropy_abnormal": float(np.mean(per_class["abnormal"])) if per_class["abnormal"] else None,
                       "aopc": float(np.mean(aopcs)), "n": len(subset)}
    report["xai"] = xai
    return report


def markdown_report(report: dict) -> str:
    c = report["classification"]
    lines = ["## Classification", "",
             "| n | accuracy | precision | recall | F1 | abnormal recall | confusion [[TN, FP], [FN, TP]] |",
             "|---|---|---|---|---|---|---|",
             f"| {c['n']} | {c['accuracy']:.3f} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} |"
             f" {c['abnormal_recall']:.3f} | {c['confusion']} |", "",
             "## Segmentation (mean per-image Dice / IoU; pooled Dice in brackets)", "",
             "| method | nucleus Dice | nucleus IoU | cytoplasm Dice | cytoplasm IoU | mean Dice | mean IoU |"
             " n | s / image |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["segmentation"].items():
        lines.append(
            f"| `{name}` | {r['nucleus']['dice']:.3f} ({r['pooled']['nucleus']['dice']:.3f}) |"
            f" {r['nucleus']['iou']:.3f} | {r['cytoplasm']['dice']:.3f} ({r['pooled']['cytoplasm']['dice']:.3f}) |"
            f" {r['cytoplasm']['iou']:.3f} | {r['mean']['dice']:.3f} | {r['mean']['iou']:.3f} | {r['n_images']} |"
            f" {r['seconds_per_image']:.3f} |")
    if report.get("best_method"):
        lines += ["", f"Best: `{report['best_method']['name']}` (mean Dice {report['best_method']['mean_dice']:.3f})"]
        best = report["segmentation"][report["best_method"]["name"]]
        lines += ["", "Per Herlev class (best method): ", "", "| class | n | nucleus Dice | cytoplasm Dice |",
                  "|---|---|---|---|"]
        for g, v in best["per_group"].items():
            lines.append(f"| {g} | {v['n']} | {v['nucleus_dice']:.3f} | {v['cytoplasm_dice']:.3f} |")
    if report.get("xai"):
        lines += ["", "## Explanations", "", "| method | entropy (all) | normal | abnormal | AOPC | n |",
                  "|---|---|---|---|---|---|"]
        for m, v in report["xai"].items():
            lines.append(f"| {m} | {v['entropy']:.2f} | {v['entropy_normal'] or float('nan'):.2f} |"
                         f" {v['entropy_abnormal'] or float('nan'):.2f} | {v['aopc']:.3f} | {v['n']} |")
    return "\n".join(lines) + "\n"
