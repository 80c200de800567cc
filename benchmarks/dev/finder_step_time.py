"""Seconds per finder training step, for comparing code versions on the same composed fields.

Composes once (the first N training-split Herlev cells, pseudo-labelled as ``train-finder`` does;
no mask is read) and saves the fields; then each run loads them and times ``train_finder``'s
steps with the code on ``PYTHONPATH`` (so an older commit's worktree can be timed on the same
fields, in the same window):

    python benchmarks/dev/finder_step_time.py compose --cells 60 --fields 60 --save data/cache/step_fields.npz
    PYTHONPATH=<worktree>/src python benchmarks/dev/finder_step_time.py time --load data/cache/step_fields.npz \
        --steps 60 [--precision float32] --label old --out benchmarks/results/dev/finder_step_time.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields as dc_fields
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def compose(args) -> None:
    from napari_cervseg.classify import load_model
    from napari_cervseg.io.datasets import read_dataset
    from napari_cervseg.workflows.finder_training import FinderTrainConfig, compose_fields, training_cells

    model = load_model("default")
    train = set(model.card["training"]["split"]["train"])
    samples = [s for s in read_dataset(args.data) if s.name in train][:args.cells]
    cells = training_cells([s.load_image() for s in samples])
    images, targets, rays, sizes = compose_fields(cells, FinderTrainConfig(n_fields=args.fields))
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.save, images=images, targets=targets, rays=rays)
    print(f"{len(cells)} cells, {len(images)} fields -> {args.save}")


def time_steps(args) -> None:
    import subprocess

    import torch

    import napari_cervseg
    from napari_cervseg.workflows.finder_training import FinderTrainConfig, train_finder

    data = np.load(args.load)
    config = {"steps": args.steps, "minutes": 1e6, "seed": 0}
    if args.precision:
        config["precision"] = args.precision
    known = {f.name for f in dc_fields(FinderTrainConfig)}
    finder = train_finder(data["images"], data["targets"], data["rays"], {},
                          FinderTrainConfig(**{k: v for k, v in config.items() if k in known}), log=lambda *a: None)
    src = Path(napari_cervseg.__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    row = {"label": args.label, "commit": commit, "precision": finder.card.get("step_dtype", "float32"),
           "steps": finder.card["steps"], "seconds": finder.card["train_seconds"],
           "seconds_per_step": round(finder.card["train_seconds"] / finder.card["steps"], 3),
           "threads": torch.get_num_threads(), "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print(json.dumps(row))
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compose")
    c.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "herlev"))
    c.add_argument("--cells", type=int, default=60)
    c.add_argument("--fields", type=int, default=60)
    c.add_argument("--save", required=True)
    t = sub.add_parser("time")
    t.add_argument("--load", required=True)
    t.add_argument("--steps", type=int, default=60)
    t.add_argument("--precision", default=None)
    t.add_argument("--label", required=True)
    t.add_argument("--out", required=True)
    args = parser.parse_args()
    compose(args) if args.cmd == "compose" else time_steps(args)


if __name__ == "__main__":
    main()
