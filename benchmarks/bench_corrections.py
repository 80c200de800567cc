"""Learning from corrections, as a user adapting the tool to their own laboratory.

Crops of the ISBI 2014 development fields (another lab's grey cells; ``read_isbi_cell_crops``),
split BY FIELD: the user "corrects" 5, 10 or 20 cells of some fields (their masks stand in for the
user's brush) and the cells of the other fields are scored, before (the bundled self-trained
segmenter; and the Grad-CAM++ pipeline, Algorithm 1, for reference) and after fine-tuning with
``learn_from_corrections`` (its default recipe). Each draw of fields is repeated over seeds.
The four development fields on which the recipe was chosen (benchmarks/dev/tune_corrections.py)
are left out entirely.

    PYTHONPATH=src python benchmarks/bench_corrections.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from napari_cervseg import segment_cell
from napari_cervseg.io.datasets import read_isbi_cell_crops
from napari_cervseg.measure.scores import segmentation_scores
from napari_cervseg.segment.student import bundled_segmenters, load_segmenter
from napari_cervseg.workflows.corrections import CorrectionConfig, learn_from_corrections

sys.path.insert(0, str(Path(__file__).parent / "dev"))
from tune_corrections import DEV_FIELDS  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def nc(labels) -> float:
    """Nucleus area / whole-cell area."""
    cell = int((labels >= 1).sum())
    return float((labels == 2).sum()) / cell if cell else float("nan")


def summary(preds: dict, crops: list) -> dict:
    """Mean Dice (nucleus, cytoplasm) and N/C agreement of predictions on the given cells."""
    scores = [segmentation_scores(preds[c.name], c.mask) for c in crops]
    got = np.array([nc(preds[c.name]) for c in crops])
    true = np.array([nc(c.mask) for c in crops])
    ok = np.isfinite(got)
    rel = np.abs(got[ok] - true[ok]) / true[ok]
    return {"nucleus_dice": float(np.mean([s["nucleus"]["dice"] for s in scores])),
            "cytoplasm_dice": float(np.mean([s["cytoplasm"]["dice"] for s in scores])),
            "nc_pearson_r": float(np.corrcoef(got[ok], true[ok])[0, 1]) if ok.sum() > 2 else float("nan"),
            "nc_median_rel_error": float(np.median(rel)) if rel.size else float("nan"),
            "cells": len(crops), "no_cell_found": int((~ok).sum())}


def draw(crops: list, n: int, seed: int):
    """Fields in a random order fill the correction pool until it holds ``n`` cells; ``n`` of its
    cells (random) are corrected; every cell of the other fields is scored."""
    rng = np.random.default_rng(seed)
    fields = sorted({c.field for c in crops})
    rng.shuffle(fields)
    pool_fields, pool = [], []
    for f in fields:
        if len(pool) >= n:
            break
        pool_fields.append(f)
        pool += [c for c in crops if c.field == f]
    order = rng.permutation(len(pool))[:n]
    corrected = [pool[i] for i in sorted(order)]
    scored = [c for c in crops if c.field not in pool_fields]
    return corrected, scored


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="../shared/data/fields-isbi-dev")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "corrections.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    crops = [c for c in read_isbi_cell_crops(args.data) if c.field not in DEV_FIELDS]
    base = load_segmenter("default")
    base_file = bundled_segmenters()["default"]
    print(f"{len(crops)} cells in {len({c.field for c in crops})} fields (development fields left out)", flush=True)
    # as segment_cell runs them: each segmenter with its own card's cell threshold
    base_preds = {c.name: base.predict(c.image, cell_threshold=base.cell_threshold) for c in crops}
    t0 = time.perf_counter()
    gc_preds = {}
    for c in crops:
        r = segment_cell(c.image, method="gradcam++")
        gc_preds[c.name] = r.labels
    gc_seconds = (time.perf_counter() - t0) / len(crops)
    print("before-figures done", flush=True)
    config = CorrectionConfig()
    runs = []
    for n in args.sizes:
        for seed in args.seeds:
            corrected, scored = draw(crops, n, seed)
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                path = learn_from_corrections([c.image for c in corrected], [c.mask for c in corrected],
                                              Path(d) / "mine", config=CorrectionConfig(**{**asdict(config),
                                                                                          "seed": seed}))
                seconds = time.perf_counter() - t0
                tuned = load_segmenter(path)
                after = {c.name: tuned.predict(c.image, cell_threshold=tuned.cell_threshold) for c in scored}
            run = {"n_corrected": n, "seed": seed, "corrected_cells": [c.name for c in corrected],
                   "corrected_fields": sorted({c.field for c in corrected}),
                   "scored_fields": sorted({c.field for c in scored}), "fine_tune_seconds": seconds,
                   "gradcam++": summary(gc_preds, scored), "before": summary(base_preds, scored),
                   "after": summary(after, scored)}
            runs.append(run)
            print(n, seed, f"{seconds:.0f} s", {k: round(v, 3) for k, v in run["after"].items()},
                  "before", {k: round(v, 3) for k, v in run["before"].items()}, flush=True)

    metrics = ("nucleus_dice", "cytoplasm_dice", "nc_pearson_r", "nc_median_rel_error")
    table = []
    for n in args.sizes:
        rs = [r for r in runs if r["n_corrected"] == n]
        row = {"n_corrected": n, "draws": len(rs), "scored_cells": [r["after"]["cells"] for r in rs],
               "fine_tune_seconds": [float(np.mean([r["fine_tune_seconds"] for r in rs])),
                                     float(np.std([r["fine_tune_seconds"] for r in rs]))]}
        for which in ("gradcam++", "before", "after"):
            row[which] = {m: [float(np.mean([r[which][m] for r in rs])), float(np.std([r[which][m] for r in rs]))]
                          for m in metrics}
        table.append(row)
    command = "PYTHONPATH=src python " + " ".join(sys.argv)
    report = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "torch_threads": args.threads, "machine": platform.platform(),
              "base_segmenter": {"file": base_file.name,
                                 "sha256": hashlib.sha256(base_file.read_bytes()).hexdigest()},
              "recipe": asdict(config), "development_fields_left_out": list(DEV_FIELDS),
              "gradcam++_seconds_per_cell": gc_seconds, "summary": table, "runs": runs,
              "total_seconds": time.perf_counter() - t_start}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))

    def ms(v, digits=3):
        return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"

    lines = ["# Learning from corrections: another lab's cells (ISBI 2014 development fields)", "",
             (f"`{command}` ({report['date']}; torch {args.threads} thread(s) on a shared 2-core machine, timings"
             " inflated by other jobs)"), "",
             f"{len(crops)} complete cells in {len({c.field for c in crops})} fields (the 4 development fields on"
             " which the recipe was chosen, " + ", ".join(DEV_FIELDS) + ", are left out). Split by field: the"
             " user corrects N cells of some fields (their masks stand in for the brush), the cells of the other"
             " fields are scored. Mean ± standard deviation over draws (seeds "
             + ", ".join(map(str, args.seeds)) + "). Before: the bundled self-trained segmenter"
             f" ({base_file.name}, sha256 {report['base_segmenter']['sha256'][:12]}); after: it fine-tuned by"
             f" `learn_from_corrections` with its default recipe ({asdict(config)}). Student labels are"
             " `CellSegmenter.predict` (flip test-time augmentation) with each segmenter's own card threshold, as"
             f" `segment_cell` runs it (bundled: p(cell) >= {base.cell_threshold}; fine-tuned: none, the argmax)."
             " N/C = nucleus area / whole-cell area.", "",
             ("| corrected cells | scored cells | segmenter | nucleus Dice | cytoplasm Dice | N/C r |"
             " N/C median rel. error | fine-tuning s |"),
             "|---|---|---|---|---|---|---|---|"]
    for row in table:
        scored = f"{min(row['scored_cells'])}-{max(row['scored_cells'])}"
        for which, label in (("gradcam++", "Grad-CAM++ pipeline (Alg. 1)"), ("before", "self-trained, before"),
                             ("after", "**after fine-tuning**")):
            m = row[which]
            secs = ms(row["fine_tune_seconds"], 0) if which == "after" else ""
            lines.append(f"| {row['n_corrected']} | {scored} | {label} | {ms(m['nucleus_dice'])} |"
                         f" {ms(m['cytoplasm_dice'])} | {ms(m['nc_pearson_r'])} | {ms(m['nc_median_rel_error'])} |"
                         f" {secs} |")
    lines += ["", f"Grad-CAM++ pipeline: {gc_seconds:.2f} s per cell. Total run {report['total_seconds'] / 60:.1f} min.",
              "", "Per draw: " + out.name + " (`runs`)."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
