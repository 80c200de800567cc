"""Self-train the learned finder on the real unlabelled fields (issue 22; no mask is read).

Each real field is pseudo-labelled by the finders themselves: every cell the learned finder finds
with a nucleus, plus each classic cell whose nucleus no learned nucleus touches and that lies at
least half inside a learned extent (a nucleus on a cell: the learned finder misses compact nuclei
in clumps; a classic "cell" on bare slide is an inflammatory cell or debris, left out). Its extent
is the learned extent holding it when that one has no nucleus of its own, else the classic region.
The pseudo-labels are written as the field route writes a user's corrections and the finder is
fine-tuned by the corrections route (``finetune_finder``, default settings). The rule that would
bundle the result: benchmarks/results/finder_rule.md (written before this was built).

    python benchmarks/dev/adapt_finder_real.py --out runs/finder_v3_real.safetensors [--save-labels DIR]
        [--rehearse N]

``--rehearse N`` adds N fields composed by the finder's training composer from the training
split's pseudo-labelled cells (labels known by construction; no mask), so that fine-tuning on the
grey real fields does not forget the colour cells it was trained on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from napari_cervseg import segment_field
from napari_cervseg.segment.finder import FoundCell, load_finder, save_finder
from napari_cervseg.workflows.fields import find_cells
from napari_cervseg.workflows.finder_training import FinderCorrectionConfig, finetune_finder

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "fields-real-unlabelled" / "images"


def _full(cell: FoundCell, mask: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    r0, c0, r1, c1 = cell.box
    out[r0:r1, c0:c1] = mask
    return out


def pseudo_cells(rgb: np.ndarray, learned, classic="classic") -> tuple[list[FoundCell], dict]:
    """The pseudo-labelled cells of one field and how many came from where."""
    shape = rgb.shape[:2]
    found = find_cells(rgb, learned)
    with_nucleus = [c for c in found if c.nucleus.any()]
    without = [c for c in found if not c.nucleus.any()]
    learned_nuclei = np.zeros(shape, bool)
    for c in with_nucleus:
        learned_nuclei |= _full(c, c.nucleus, shape)
    cover = np.zeros(shape, bool)
    for c in found:
        cover |= _full(c, c.extent, shape)
    out = list(with_nucleus)
    used_blobs: set[int] = set()
    added = bare = touching = 0
    for c in find_cells(rgb, classic):
        if not c.nucleus.any():
            continue
        nucleus = _full(c, c.nucleus, shape)
        if (nucleus & learned_nuclei).any():
            touching += 1
            continue
        if (nucleus & cover).sum() < 0.5 * nucleus.sum():
            bare += 1
            continue  # on bare slide: an inflammatory cell or debris, left out
        holder = next((i for i, b in enumerate(without)
                       if i not in used_blobs and (_full(b, b.extent, shape) & nucleus).sum() >= 0.5 * nucleus.sum()),
                      None)
        if holder is not None:  # a learned extent without a nucleus of its own: this is its nucleus
            used_blobs.add(holder)
            blob = without[holder]
            extent = _full(blob, blob.extent, shape)
            rows, cols = np.nonzero(extent | nucleus)
            box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
            sl = (slice(box[0], box[2]), slice(box[1], box[3]))
            out.append(FoundCell(box, (extent | nucleus)[sl], nucleus[sl], c.score))
        else:
            out.append(c)
        added += 1
    return out, {"learned": len(with_nucleus), "classic_added": added, "classic_on_bare_slide": bare,
                 "classic_same_nucleus": touching}


class _Given:
    """A finder that returns the cells it was given (to draw them as the field route does)."""

    def __init__(self, cells):
        self.cells = cells

    def find(self, rgb, scale=None):
        return list(self.cells)

    def choose_scale(self, rgb, scale=None):
        return 1.0


def rehearsal_fields(n: int, seed: int = 1):
    """``n`` composed training-split fields as (images, cells, nuclei) lists, at the scale that
    the finder's FIRST_SCALE resize brings back to its training fields' working scale."""
    from napari_cervseg.classify import load_model
    from napari_cervseg.io.datasets import read_dataset
    from napari_cervseg.segment.finder import FIRST_SCALE
    from napari_cervseg.workflows.finder_training import FinderTrainConfig, compose_field, training_cells

    train = set(load_model("default").card["training"]["split"]["train"])
    samples = [s for s in read_dataset(ROOT.parent / "shared" / "data" / "herlev") if s.name in train]
    cells = training_cells([s.load_image() for s in samples])
    base = FinderTrainConfig()
    config = FinderTrainConfig(field_size=int(round(base.field_size / FIRST_SCALE)),
                               scale_range=tuple(v / FIRST_SCALE for v in base.scale_range))
    rng = np.random.default_rng(seed)
    images, cells_list, nuclei_list = [], [], []
    for _ in range(n):
        rgb, _, _, info = compose_field(cells, rng, config)
        labels = np.zeros(rgb.shape[:2], np.int32)
        nuclei = np.zeros(rgb.shape[:2], np.int32)
        for k, (_, cell_mask, _) in enumerate(info["placed"], start=1):
            labels[cell_mask] = k  # later cells lie on top
        for k, (_, _, nucleus) in enumerate(info["placed"], start=1):
            labels[nucleus] = k  # a nucleus lies in its own cell
            nuclei[nucleus] = k
        images.append(rgb)
        cells_list.append(labels)
        nuclei_list.append(nuclei)
    return images, cells_list, nuclei_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finder", default="default", help="the finder to adapt (bundled name or file)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--save-labels", default=None, help="write each field's pseudo-labels (PNG) here")
    parser.add_argument("--rehearse", type=int, default=0,
                        help="also fine-tune on this many composed training-split fields")
    args = parser.parse_args()
    base = load_finder(args.finder)
    images, cells_list, nuclei_list, counts = [], [], [], {}
    for path in sorted(REAL.glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        cells, n = pseudo_cells(rgb, base)
        drawn = segment_field(rgb, model=None, method="colour-baseline", finder=_Given(cells), per_cell="classify")
        images.append(rgb)
        cells_list.append(drawn.cells)
        nuclei_list.append(drawn.nuclei)
        counts[path.stem] = {**n, "cells": int(drawn.n_cells)}
        print(path.stem, counts[path.stem])
        if args.save_labels:
            out = Path(args.save_labels)
            out.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / f"{path.stem}_cells.png"), drawn.cells.astype(np.uint16))
            cv2.imwrite(str(out / f"{path.stem}_nuclei.png"), drawn.nuclei.astype(np.uint16))
    sources = [f"{k} (pseudo-labels)" for k in counts]
    if args.rehearse:
        more = rehearsal_fields(args.rehearse)
        images, cells_list, nuclei_list = images + more[0], cells_list + more[1], nuclei_list + more[2]
        sources += [f"composed training-split field {i + 1} (rehearsal)" for i in range(args.rehearse)]
    config = FinderCorrectionConfig()
    t0 = time.perf_counter()
    tuned = finetune_finder(base, images, cells_list, nuclei_list, config, sources=sources, log=print)
    tuned.card.update({
        "supervision": ("self-trained: fine-tuned on the real unlabelled fields pseudo-labelled by the learned and"
                        " classic finders (no mask read)"),
        "pseudo_labels": counts, "command": (f"python benchmarks/dev/adapt_finder_real.py --finder {args.finder} --out {args.out}"
                    + (f" --rehearse {args.rehearse}" if args.rehearse else "")),
        "finetune_seconds": round(time.perf_counter() - t0, 1)})
    path = save_finder(tuned, args.out)
    print(json.dumps(counts), f"-> {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
