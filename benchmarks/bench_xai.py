"""Explanation figures per method: time per heatmap (CPU), entropy (normal / abnormal / all),
pixel-flipping curves (PNG) and AOPC, ROAD and confidence change (pytorch-grad-cam), on the
default model's test split; and CAM x LRP fusions tried against the ensembles.

    .venv/bin/python benchmarks/bench_xai.py [--data ../shared/data/herlev] [--n 60]

Writes benchmarks/results/xai.json, xai.md and xai_pixel_flipping.png.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import default_model_and_test_cells, parser

from napari_cervseg import explain, explain_batch
from napari_cervseg.explain import METHODS
from napari_cervseg.explain import pgc as xai_pgc
from napari_cervseg.explain.metrics import confidence_change, heatmap_entropy, pixel_flipping, road

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34)]


def plot_curves(curves: dict, path: Path, size=(900, 560)):
    """Mean explained-class probability vs fraction of pixels flipped, one line per method (cv2)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 230, 30, 60
    x0, x1, y0, y1 = left, w - right, h - bottom, top
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    fmax = max(max(c["fractions"]) for c in curves.values())
    for t in np.linspace(0, 1, 6):
        y = int(y0 + (y1 - y0) * t)
        cv2.line(img, (x0 - 4, y), (x0, y), (0, 0, 0), 1)
        cv2.putText(img, f"{t:.1f}", (x0 - 40, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for f in np.linspace(0, fmax, 6):
        x = int(x0 + (x1 - x0) * f / fmax)
        cv2.line(img, (x, y0), (x, y0 + 4), (0, 0, 0), 1)
        cv2.putText(img, f"{f:.2f}", (x - 14, y0 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "fraction of most relevant pixels flipped", (x0 + 120, h - 15), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "p(explained class)", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, c) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)][::-1]
        pts = np.array([[x0 + (x1 - x0) * f / fmax, y0 + (y1 - y0) * p] for f, p in
                        zip(c["fractions"], c["mean_probability"], strict=False)], np.int32)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        ly = top + 20 + 22 * i
        cv2.line(img, (x1 + 15, ly - 4), (x1 + 40, ly - 4), colour, 2)
        cv2.putText(img, f"{name} ({c['aopc']:.3f})", (x1 + 45, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.imwrite(str(path), img)


#: CAM x LRP fusions tried against the ensembles, built from the per-method heatmaps (geometric mean)
CANDIDATES = {
    "gradcam++ x lrp-ruleset1": lambda h: np.sqrt(h["gradcam++"] * h["lrp-ruleset1"]),
    "layercam x lrp-ruleset1": lambda h: np.sqrt(h["layercam"] * h["lrp-ruleset1"]),
}


def _scores(model, img, heat, target, with_road):
    flip = pixel_flipping(model, img, heat, target=target)
    out = {"entropy": heatmap_entropy(heat), "flip": flip}
    if with_road:
        out["road"] = road(model, img, heat, target)
        out["confidence_change"] = confidence_change(model, img, heat, target)
    return out


def _summary(rows, labels, with_road):
    probs = np.array([r["flip"]["probabilities"] for r in rows])
    ent = {"normal": [r["entropy"] for r, lab in zip(rows, labels, strict=False) if lab == "normal"],
           "abnormal": [r["entropy"] for r, lab in zip(rows, labels, strict=False) if lab == "abnormal"]}
    out = {"entropy": float(np.mean(ent["normal"] + ent["abnormal"])),
           "entropy_normal": float(np.mean(ent["normal"])) if ent["normal"] else None,
           "entropy_abnormal": float(np.mean(ent["abnormal"])) if ent["abnormal"] else None,
           "aopc": float(np.mean([r["flip"]["aopc"] for r in rows])),
           "pixel_flipping_curve": {"fractions": rows[0]["flip"]["fractions"],
                                    "mean_probability": probs.mean(0).tolist(),
                                    "aopc": float(np.mean([r["flip"]["aopc"] for r in rows]))}}
    if with_road:
        for k in ("morf", "lerf", "combined"):
            out[f"road_{k}"] = float(np.mean([r["road"][k] for r in rows]))
        out["confidence_change"] = float(np.mean([r["confidence_change"] for r in rows]))
    return out


def main(argv=None):
    args = parser(__doc__, "xai").parse_args(argv)
    model, samples, images = default_model_and_test_cells(args, spread=True)  # every class represented
    with_road = xai_pgc.available()
    labels = [s.label for s in samples]
    heatmaps = [{} for _ in images]
    targets = [None] * len(images)
    results, curves, times = {}, {}, {}
    for method in METHODS:
        explain(model, images[0], method=method)  # warm-up
        times[method] = []
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            e = explain(model, img, method=method)
            times[method].append(time.perf_counter() - t0)
            heatmaps[i][method] = e.heatmap
            targets[i] = e.target_class
        t0 = time.perf_counter()
        explain_batch(model, images[:32], method=method)
        batch_seconds = (time.perf_counter() - t0) / min(32, len(images))
        rows = [_scores(model, img, heatmaps[i][method], targets[i], with_road) for i, img in enumerate(images)]
        results[method] = {"ms_per_heatmap_median": 1000 * float(np.median(times[method])),
                           "ms_per_heatmap_in_batch_of_32": 1000 * batch_seconds,
                           **_summary(rows, labels, with_road)}
        curves[method] = results[method]["pixel_flipping_curve"]
        print(f"{method}: {results[method]['ms_per_heatmap_median']:.1f} ms, entropy {results[method]['entropy']:.2f},"
              f" AOPC {results[method]['aopc']:.3f}, ROAD {results[method].get('road_combined', float('nan')):.3f}",
              flush=True)
    candidates = {}
    for name, combine in CANDIDATES.items():
        rows = [_scores(model, img, np.clip(combine(heatmaps[i]), 0, 1).astype(np.float32), targets[i], with_road)
                for i, img in enumerate(images)]
        candidates[name] = _summary(rows, labels, with_road)
        print(f"candidate {name}: AOPC {candidates[name]['aopc']:.3f}, ROAD {candidates[name].get('road_combined', 0):.3f}",
              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python benchmarks/bench_xai.py " + " ".join(argv or sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "n_images": len(images),
            "n_normal": sum(s.label == "normal" for s in samples), "model": model.source,
            "cam_backend": f"pytorch-grad-cam {xai_pgc.version()}" if with_road else "builtin"}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results,
                                                    "ensemble_candidates": candidates}, indent=2))
    png = out.with_name(out.name + "_pixel_flipping.png")
    plot_curves(curves, png)
    lines = ["# Explanations on the default model's test split (CPU)\n", f"Command: `{meta['command']}`  ",
             (f"{meta['date']}, {meta['machine']}, {meta['torch_threads']} torch threads, {meta['n_images']} cells"
             f" ({meta['n_normal']} normal); CAM family through {meta['cam_backend']}.\n"),
             ("AOPC: mean drop of the explained class's probability when the most relevant 5-50 % of the"
             " pixels are replaced by the mean colour (higher = more faithful). ROAD (pytorch-grad-cam):"
             " the same class's probability change when the pixels above (MoRF) / below (LeRF) the"
             " 20/40/60/80th percentile of the heatmap are removed by noisy linear imputation;"
             " combined = (LeRF - MoRF) / 2, higher = more faithful. Confidence change: probability for"
             " the image multiplied by the heatmap minus that for the image (higher = the heatmap keeps"
             " what the decision rests on).\n"),
             ("| method | ms / heatmap | ms / heatmap in a batch of 32 | entropy (all) | normal | abnormal | AOPC |"
             " ROAD MoRF | ROAD LeRF | ROAD combined | confidence change |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def road_cells(r):
        if "road_combined" not in r:
            return " – | – | – | – |"
        return (f" {r['road_morf']:.3f} | {r['road_lerf']:.3f} | {r['road_combined']:.3f} |"
                f" {r['confidence_change']:.3f} |")

    for m, r in results.items():
        lines.append(f"| {m} | {r['ms_per_heatmap_median']:.1f} | {r['ms_per_heatmap_in_batch_of_32']:.1f} |"
                     f" {r['entropy']:.2f} | {r['entropy_normal']:.2f} | {r['entropy_abnormal']:.2f} | {r['aopc']:.3f} |"
                     + road_cells(r))
    lines += ["", "## CAM x LRP fusions tried against the ensembles (same cells, same metrics)", "",
              "| ensemble | entropy | AOPC | ROAD MoRF | ROAD LeRF | ROAD combined | confidence change |",
              "|---|---|---|---|---|---|---|"]
    for name, r in candidates.items():
        lines.append(f"| {name} | {r['entropy']:.2f} | {r['aopc']:.3f} |" + road_cells(r))
    lines.append(f"\nPixel-flipping curves: `{png.name}` (mean over the cells; AOPC in the legend).")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}, {png}")


if __name__ == "__main__":
    main()
