"""The finders' training loss on fields composed from the training cells and from cells they never
saw (issue 22, session 19): does a lower held-aside loss mean a better finder on new cells?

Both sets are composed by the finder's training composer from pseudo-labelled Herlev cells (the
self-trained segmenter's labels, as ``train-finder`` makes them; no mask is read): N cells of the
classifier card's training split, and the validation split's cells. The loss is ``finder_loss``
against those pseudo-labels (float32, eval mode).

    python benchmarks/dev/finder_loss_by_cells.py --finders default runs/finder_v6_real.safetensors ... \
        --out benchmarks/results/dev/finder_loss_by_cells.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from napari_cervseg.classify import load_model
from napari_cervseg.io.datasets import read_dataset
from napari_cervseg.segment.finder import load_finder
from napari_cervseg.workflows.finder_training import (
    FinderTrainConfig,
    _to_tensors,
    compose_fields,
    finder_loss,
    training_cells,
)

ROOT = Path(__file__).resolve().parents[2]


def fields_from(split: str, n_cells: int, n_fields: int, seed: int):
    split_names = load_model("default").card["training"]["split"][split]
    names = set(split_names)
    samples = [s for s in read_dataset(ROOT.parent / "shared" / "data" / "herlev") if s.name in names][:n_cells]
    cells = training_cells([s.load_image() for s in samples])
    images, targets, rays, _ = compose_fields(cells, FinderTrainConfig(n_fields=n_fields, seed=seed))
    return len(cells), _to_tensors(images, targets, rays)


def loss_of(finder, data) -> float:
    x, y, r = data
    net = finder.net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), 8):
            logits, half = net.forward_half_rays(x[i:i + 8])
            out.append(finder_loss(logits, half, y[i:i + 8], r[i:i + 8])[0].item() * len(x[i:i + 8]))
    return float(np.sum(out) / len(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--finders", nargs="+", required=True)
    parser.add_argument("--cells", type=int, default=75)
    parser.add_argument("--fields", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sets = {split: fields_from(split, args.cells, args.fields, args.seed) for split in ("train", "val")}
    lines = ["# Finder loss on fields composed from training cells and from unseen cells (issue 22, session 19)", "",
             "`python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) + "`", "",
             (f"{args.fields} fields composed (seed {args.seed}) from the first {args.cells} cells of each split"
             f" ({sets['train'][0]} training-split and {sets['val'][0]} validation-split cells pseudo-labelled);"
             " loss against the pseudo-labels, lower is better."), "",
             "| finder | steps | loss, training cells | loss, unseen (validation) cells |", "|---|---|---|---|"]
    for name in args.finders:
        finder = load_finder(name)
        steps = finder.card.get("steps")
        base = finder.card.get("base_card", {}).get("steps")
        label = f"{steps}" if base is None else f"{base} + {steps} self-training"
        lines.append(f"| {name} | {label} | {loss_of(finder, sets['train'][1]):.3f} | {loss_of(finder, sets['val'][1]):.3f} |")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
