"""Which segmentation method is the default: the rule, applied on the VALIDATION split.

Rule: the default is the method (with its settings) of highest mean of nucleus and cytoplasm Dice
on the validation split of the bundled model's card, among those whose median CPU time per cell
(``segment_cell``, everything included, 1 torch thread; process time, i.e. what a cell costs one
core of this CPU, which sharing the cores with other jobs does not inflate as it does wall time) is
at most 0.25 s. Masks are
used for measuring only; nothing is trained or tuned here (the self-trained settings compared were
chosen among a few variants on this same split: benchmarks/dev/val_student_variants.py).

    PYTHONPATH=src .venv/bin/python benchmarks/val_default.py [--threads 1]

Writes benchmarks/results/default_method_val.md / .json. The 2 CPU cores of this machine may be
shared with other jobs while it runs: wall seconds (also written) are then inflated; the file says
the load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_cervseg import load_model, segment_cell, segmentation_scores
from napari_cervseg.io.datasets import default_data_root, read_dataset
from napari_cervseg.segment.settings import DEFAULT_SEGMENT_METHOD, SelfTrainedSettings, settings_for
from napari_cervseg.workflows.evaluate import parse_method_spec

MAX_SECONDS = 0.25
CANDIDATES = (
    "gradcam++",                       # Algorithm 1 (the explanation default)
    "gradcam++-paper",
    "lrp-ruleset1",                    # Algorithm 2
    "lrp-ruleset2",
    "colour-baseline",                 # no explanation
    "self-trained:cell_threshold=0.5,refine=none,tta=flips",   # the student as bundled before issue 15
    "self-trained",                    # the student with this version's default settings
)
RESULTS = Path(__file__).parent / "results"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "default_method_val"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model("default", device="cpu")
    val = set(model.card["training"]["split"]["val"])
    samples = [s for s in read_dataset(default_data_root()) if s.name in val and s.mask_path]
    specs = {spec: parse_method_spec(spec) for spec in CANDIDATES}
    ran_with = {}  # the settings each result says it ran with (unset values resolved, e.g. the card's threshold)
    scores = {spec: [] for spec in specs}
    seconds = {spec: [] for spec in specs}
    cpu = {spec: [] for spec in specs}
    load = os.getloadavg()[0]
    for method, opts in specs.values():  # warm-up: load weights, first-call costs
        segment_cell(samples[0].load_image(), model=model, method=method, **opts)
    for s in samples:
        image, truth = s.load_image(), s.load_mask()
        for spec, (method, opts) in specs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            result = segment_cell(image, model=model, method=method, **opts)
            labels = result.labels
            ran_with[spec] = {k: v for k, v in result.settings.items() if k in settings_for(method)[0].as_dict()}
            seconds[spec].append(time.perf_counter() - t0)
            cpu[spec].append(time.process_time() - c0)
            sc = segmentation_scores(labels, truth)
            scores[spec].append((sc["nucleus"]["dice"], sc["cytoplasm"]["dice"]))
    load = max(load, os.getloadavg()[0])
    rows = {}
    for spec, (method, opts) in specs.items():
        a = np.array(scores[spec])
        rows[spec] = {"method": method, "settings": settings_for(method, **opts)[0].as_dict(),
                      "ran_with": ran_with[spec],
                      "nucleus_dice": float(a[:, 0].mean()), "cytoplasm_dice": float(a[:, 1].mean()),
                      "mean_dice": float(a.mean()), "wall_seconds_median": float(np.median(seconds[spec])),
                      "cpu_seconds_median": float(np.median(cpu[spec]))}
    eligible = {k: r for k, r in rows.items() if r["cpu_seconds_median"] <= MAX_SECONDS}
    winner = max(eligible, key=lambda k: eligible[k]["mean_dice"]) if eligible else None
    cmd = f"PYTHONPATH=src .venv/bin/python benchmarks/val_default.py --threads {args.threads}"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = {"command": cmd, "date": date, "n_cells": len(samples), "threads": args.threads,
           "max_load_average": load, "rule": (f"highest mean of nucleus and cytoplasm Dice on the validation split"
                                              f" among methods with a median CPU time <= {MAX_SECONDS} s per cell"
                                              " (1 torch thread)"),
           "candidates": rows, "winner": winner,
           "winner_method": rows[winner]["method"] if winner else None,
           "winner_settings": rows[winner]["settings"] if winner else None,
           "default_in_code": {"method": DEFAULT_SEGMENT_METHOD, "settings": SelfTrainedSettings().as_dict()}}
    lines = ["# The default segmentation method, chosen on the validation split\n",
             (f"`{cmd}` ({date}); {len(samples)} validation cells of the bundled model's card (masks for measuring"
             f" only); {args.threads} torch thread(s); load average up to {load:.1f} on 2 cores shared with other"
             " jobs, so wall seconds are inflated (CPU seconds: process time, what a cell costs one core).\n"),
             f"**Rule**: {out['rule']}.\n",
             ("| candidate | nucleus Dice | cytoplasm Dice | mean | CPU s / cell (median) | wall s / cell (median) |"
             " within time |"), "|---|---|---|---|---|---|---|"]
    for spec, r in rows.items():
        mark = " **(winner)**" if spec == winner else ""
        lines.append(f"| `{spec}`{mark} | {r['nucleus_dice']:.3f} | {r['cytoplasm_dice']:.3f} | {r['mean_dice']:.3f} |"
                     f" {r['cpu_seconds_median']:.3f} | {r['wall_seconds_median']:.3f} | {'yes' if spec in eligible else 'no'} |")
    lines.append(f"\nWinner: `{winner}` -> settings {rows[winner]['settings'] if winner else None}"
                 f" (ran with {rows[winner]['ran_with'] if winner else None}).")
    lines.append(f"Default in the code (segment.settings.DEFAULT_SEGMENT_METHOD + SelfTrainedSettings()):"
                 f" `{DEFAULT_SEGMENT_METHOD}` {SelfTrainedSettings().as_dict()}.")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(out, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
