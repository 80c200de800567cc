"""Evaluation against ground-truth masks (for measuring only: masks never train or fit anything).

Dice / IoU per class are computed per image and averaged over images ("per image"); the pooled
variant sums intersections and sizes over all images first.
"""

from __future__ import annotations

import time

import numpy as np

from ..classify import CLASS_NAMES
from ..classify.predict import classify
from ..io.datasets import Sample
from ..measure.scores import classification_metrics, segmentation_scores
from ..segment.pipeline import segment_cell
from ..stages import report_count


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
            report_count(progress, done, total, "images")
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
    "self-trained",                                # U-Net fitted to gradcam++'s pseudo-masks (no truth)
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


def _xai_subset(samples: list[Sample], n_xai: int) -> set[str]:
    """Names of up to ``n_xai`` samples evenly spaced over the list (the manifest is ordered by
    Herlev class, so every class is in)."""
    return {s.name for s in samples[:: max(1, len(samples) // max(n_xai, 1))][:n_xai]} if n_xai > 0 else set()


def evaluate_image(sample: Sample, model, specs: list, xai_methods: list, do_xai: bool,
                   torch_threads: int | None = None) -> dict:
    """Everything the evaluation needs from one image, in one task (a worker process can run it):
    its classification, every method spec's segmentation scores, and (``do_xai``) the entropy and
    AOPC of each explanation method. One explanation per (method, target, layer) serves every
    spec that uses it and the XAI metrics; a spec's seconds include that explanation's time."""
    from ..classify import load_model
    from ..explain import explain
    from ..explain.metrics import heatmap_entropy, pixel_flipping
    from ..segment.settings import explanation_method
    from .executors import set_threads

    set_threads(torch_threads)
    model = load_model(model)
    image = sample.load_image()
    truth = sample.load_mask() if sample.mask_path is not None else None
    predicted, _, _ = classify(model, image)
    explanations: dict = {}

    def explanation(method, target=None, layer=None):
        key = (method, target, layer)
        if key not in explanations:
            explanations[key] = explain(model, image, method=method, target=target, layer=layer)
        return explanations[key]

    seg = {}
    for spec, method, options in (specs if truth is not None else []):
        opts, extra = dict(options), 0.0
        explained_by = explanation_method(method, **opts)
        if explained_by is not None:  # one explanation per method, shared by the specs that show it
            layer = opts.get("layer") if explained_by == method else None
            e = explanation(explained_by, opts.get("target"), layer)
            opts["explanation"], extra = e, e.seconds
        t0 = time.perf_counter()
        result = segment_cell(image, model=model, method=method, **opts)
        seconds = time.perf_counter() - t0 + extra
        scores = segmentation_scores(result.labels, truth)
        counts = {}
        for value, cls in ((2, "nucleus"), (1, "cytoplasm")):
            p, t = result.labels == value, truth == value
            counts[cls] = {"inter": int((p & t).sum()), "pred": int(p.sum()), "truth": int(t.sum()),
                           "union": int((p | t).sum())}
        seg[spec] = {"dice": {k: v["dice"] for k, v in scores.items()}, "counts": counts, "seconds": seconds}
    xai = {}
    if do_xai:
        for method in xai_methods:
            e = explanation(method)
            xai[method] = {"entropy": heatmap_entropy(e.heatmap),
                           "aopc": pixel_flipping(model, image, e.heatmap, target=e.target_class)["aopc"]}
    return {"name": sample.name, "group": sample.group, "label": sample.label, "predicted": predicted,
            "seg": seg, "xai": xai}


def evaluate(samples: list[Sample], model, methods=DEFAULT_COMPARISON, xai_methods=None, n_xai: int = 60,
             progress=None, workers: int = 1) -> dict:
    """Classification on every sample, segmentation per method on those with masks, XAI metrics
    (entropy, pixel-flipping AOPC) per explanation method on up to ``n_xai`` samples.

    ``workers`` > 1 spreads the images over local processes (the model must then be a name or a
    file path, which each process loads); results do not depend on it.
    ``progress(stage, fraction)`` is called once per image (``"3 of 146 images"``).
    """
    from .executors import local_executor, wait_first

    specs = [(spec, *parse_method_spec(spec)) for spec in methods]
    from ..explain import METHODS as EXPLANATION_METHODS

    # the explanation methods among the specs (the baseline explains nothing; self-trained shows
    # gradcam++, which is measured under its own name)
    xai_methods = list(xai_methods) if xai_methods is not None else sorted(
        {m for _, m, _ in specs if m in EXPLANATION_METHODS})
    subset = _xai_subset(samples, n_xai)
    model_ref = model
    if workers > 1:
        model_ref = model if isinstance(model, str) else getattr(model, "source", None)
        if not model_ref or model_ref.startswith("<"):
            raise ValueError("evaluate(workers > 1) needs the model as a name or file path (each worker"
                             " process loads it); an in-memory model runs with workers=1")
    executor, threads = local_executor(workers)
    rows: dict[str, dict] = {}
    pending: set = set()

    def collect(done):
        for fut in done:
            r = fut.result()
            rows[r["name"]] = r
            report_count(progress, len(rows), len(samples), "images")

    try:
        for s in samples:
            pending.add(executor.submit(evaluate_image, s, model_ref, specs, xai_methods, s.name in subset, threads))
            if len(pending) >= 2 * workers:
                done, pending = wait_first(pending)
                collect(done)
        while pending:
            done, pending = wait_first(pending)
            collect(done)
    finally:
        executor.shutdown()
    ordered = [rows[s.name] for s in samples]
    report: dict = {"classification": classification_metrics(
        [CLASS_NAMES.index(r["label"]) for r in ordered], [CLASS_NAMES.index(r["predicted"]) for r in ordered])}
    report["classification"]["n_with_masks"] = sum(s.mask_path is not None for s in samples)
    segmentation = {}
    for spec, method, options in specs:
        per_image, times = [], []
        pooled = {c: {"inter": 0, "pred": 0, "truth": 0, "union": 0} for c in ("nucleus", "cytoplasm")}
        for r in ordered:
            if spec not in r["seg"]:
                continue
            got = r["seg"][spec]
            per_image.append({"name": r["name"], "group": r["group"], **got["dice"]})
            times.append(got["seconds"])
            for cls, c in got["counts"].items():
                for k in c:
                    pooled[cls][k] += c[k]
        result = summarise(per_image, pooled, times)
        result["per_image"] = per_image
        result["method"], result["options"] = method, options
        segmentation[spec] = result
    report["segmentation"] = segmentation
    if segmentation:
        best = max(segmentation, key=lambda k: segmentation[k]["mean"]["dice"])
        report["best_method"] = {"name": best, "mean_dice": segmentation[best]["mean"]["dice"]}
    xai = {}
    xai_rows = [r for r in ordered if r["xai"]]
    for method in xai_methods:
        per_class: dict = {"normal": [], "abnormal": []}
        for r in xai_rows:
            per_class[r["label"]].append(r["xai"][method]["entropy"])
        all_h = per_class["normal"] + per_class["abnormal"]
        xai[method] = {"entropy": float(np.mean(all_h)) if all_h else float("nan"),
                       "entropy_normal": float(np.mean(per_class["normal"])) if per_class["normal"] else None,
                       "entropy_abnormal": float(np.mean(per_class["abnormal"])) if per_class["abnormal"] else None,
                       "aopc": float(np.mean([r["xai"][method]["aopc"] for r in xai_rows])) if xai_rows
                       else float("nan"),
                       "n": len(xai_rows)}
    report["xai"] = xai
    return report


def markdown_report(report: dict) -> str:
    c = report["classification"]
    lines = ["## Classification", "",
             "| n | accuracy | precision | recall | F1 | abnormal recall | confusion [[TN, FP], [FN, TP]] |",
             "|---|---|---|---|---|---|---|",
             (f"| {c['n']} | {c['accuracy']:.3f} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} |"
             f" {c['abnormal_recall']:.3f} | {c['confusion']} |"), "",
             "## Segmentation (mean per-image Dice / IoU; pooled Dice in brackets)", "",
             ("| method | nucleus Dice | nucleus IoU | cytoplasm Dice | cytoplasm IoU | mean Dice | mean IoU |"
             " n | s / image |"), "|---|---|---|---|---|---|---|---|---|"]
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
