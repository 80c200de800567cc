"""Development check (issue 22, session 12): where the field route's remaining errors are, cell by
cell. The masks are read for these counts only; nothing is chosen from them here.

For each Herlev field set (composed, with masks and classes), at the default settings:
1. every abnormal cell not caught: the Herlev image it was cut from (how many distinct source
   cells the misses are: compositions draw the same cells again), matched or not, the verdict or
   why none (or, not matched, the reported nucleus overlapping its nucleus most: IoU, size and
   call), and its true cytoplasm as a share of its true nucleus;
2. every reported cell matching no true nucleus (a false cell): its call, p(abnormal), the
   solidity of its nucleus and the share of its nucleus on a true nucleus;
3. reported nuclei that hold two true nuclei or more (each at least half inside): their solidity;
4. every bare nucleus (cytoplasm under a tenth of the nucleus): the IoU with the true nucleus of
   the reported nucleus and of the finder's own;
5. the cells whose found nucleus has no pixel labelled nucleus by the crop's segmentation, by call
   and by whether they match a true nucleus;
6. on cells called normal with extra nucleus-like parts ("several cells"), p(abnormal) of each
   part classified on a crop of its own (the part's box grown by half its larger side), as the
   rejected second look did (`second_look_extra_nuclei.diff`).

    python benchmarks/dev/field_misses.py --sets SET [SET ...] --name NAME [--finder-contrast C]
    -> benchmarks/results/dev/field_misses_NAME.md

``--finder-contrast`` sets segment/finder.py's MIN_NUCLEUS_CONTRAST (0: the rule off), to see
the route before and after it; the option exists only with benchmarks/dev/nucleus_contrast.diff
(the rejected finder contrast rule) applied.
"""

import argparse
import csv
import math
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import tifffile
from skimage.measure import label, regionprops

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bare_nucleus_verdicts import classes_of  # noqa: E402
from bench_fields import DATA, match_nuclei  # noqa: E402


def solidity(mask: np.ndarray) -> float:
    return float(max(regionprops(label(mask)), key=lambda p: p.area).solidity) if mask.any() else 0.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def sources_of(root: Path) -> dict:
    """(field, page) -> the Herlev image the composed cell was cut from (cells.csv), if known."""
    if not (root / "cells.csv").exists():
        return {}
    with open(root / "cells.csv") as f:
        return {(row["field"], int(row["page"])): row["name"] for row in csv.DictReader(f) if "name" in row}


def _nearest(result, page: np.ndarray, rows: dict) -> str:
    """For a true cell whose nucleus no reported nucleus matches: the reported nucleus overlapping
    it most (IoU, its area over the true one's, and its cell's call), or that none touches it."""
    truth = page == 2
    ids, counts = np.unique(result.nuclei[truth], return_counts=True)
    counts, ids = counts[ids > 0], ids[ids > 0]
    if not len(ids):
        return ": no reported nucleus on it"
    k = int(ids[np.argmax(counts)])
    nucleus = result.nuclei == k
    return (f": cell {k}'s nucleus, IoU {iou(nucleus, truth):.2f}, {nucleus.sum() / max(1, truth.sum()):.2f} x its"
            f" area, called {rows[k]['predicted_class']}")


class Hooks:
    """Records, per cell of the field being segmented, what the route's per-cell step saw."""

    def __init__(self, fields):
        self.fields = fields
        self.cells: dict = {}
        self.in_crop, self.withhold = fields._in_crop, fields._withhold_if_not_one_cell
        fields._in_crop = self._in_crop
        fields._withhold_if_not_one_cell = self._withhold

    def start(self, rgb, model):
        self.cells, self.rgb, self.model = {}, rgb, model

    def _in_crop(self, cell, shape):
        out = self.in_crop(cell, shape)
        self.box = out[0]
        return out

    def _withhold(self, record, result, region, nucleus, seed, found_nuclei, own_index, *rest):
        f = self.fields
        r0, c0 = self.box[:2]
        found = seed & region
        parts = []
        if record.predicted_class == "normal":
            for part in f._other_nuclei(result, region, nucleus, found_nuclei, own_index):
                parts.append(self._part_p(part, (r0, c0)))
        self.cells[len(self.cells)] = {
            "origin": (r0, c0), "nucleus": nucleus.copy(), "seed": found.copy(),
            "bare": bool(nucleus.any() and (region & ~nucleus).sum() < f.BARE_NUCLEUS_CYTOPLASM * nucleus.sum()),
            "unseen": bool(found.any() and not ((result.labels == 2) & found).any()), "part_p": parts}
        return self.withhold(record, result, region, nucleus, seed, found_nuclei, own_index, *rest)

    def seen_as(self, cell_id: int, nucleus_in_field: np.ndarray):
        """What was recorded of the reported cell ``cell_id``: the per-cell step numbers cells as
        they come, and the route renumbers them once some are left out, so the record is the one
        whose nucleus lies most on the reported cell's."""
        best, most = None, 0
        for seen in self.cells.values():
            (r0, c0), nuc = seen["origin"], seen["nucleus"]
            overlap = (nucleus_in_field[r0:r0 + nuc.shape[0], c0:c0 + nuc.shape[1]] & nuc).sum()
            if overlap > most:
                best, most = seen, overlap
        return best

    def _part_p(self, part, origin) -> float:
        rows, cols = np.nonzero(part)
        h, w = self.rgb.shape[:2]
        r0, r1 = rows.min() + origin[0], rows.max() + 1 + origin[0]
        c0, c1 = cols.min() + origin[1], cols.max() + 1 + origin[1]
        m = max(2, int(math.ceil(0.5 * max(r1 - r0, c1 - c0))))
        crop = self.rgb[max(0, r0 - m):min(h, r1 + m), max(0, c0 - m):min(w, c1 + m)]
        from napari_cervseg.classify.predict import classify

        return float(classify(self.model, crop).probabilities["abnormal"])


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.classify import load_model
    from napari_cervseg.workflows import fields
    from napari_cervseg.workflows.fields import field_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--finder-contrast", type=float, default=None,
                        help="MIN_NUCLEUS_CONTRAST for this run (default: the module's)")
    args = parser.parse_args()
    if args.finder_contrast is not None:
        from napari_cervseg.segment import finder as finder_module

        finder_module.MIN_NUCLEUS_CONTRAST = args.finder_contrast
    model = load_model(field_model("default"))
    hooks = Hooks(fields)
    missed, false, merged, bare, unseen, parts = [], [], [], [], Counter(), []
    false_calls = Counter()
    missed_sources = Counter()
    for name in args.sets:
        root = Path(name) if Path(name).is_dir() else DATA / name
        classes = classes_of(root)
        sources = sources_of(root)
        for path in sorted((root / "images").glob("*.png")):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            pages = tifffile.imread(root / "cells" / f"{path.stem}.tif")
            pages = pages[None] if pages.ndim == 2 else pages
            hooks.start(fields.white_balanced(rgb, fields.white_balance_gains(rgb, fields.WHITE_BALANCE)), model)
            result = segment_field(rgb, model="default", operating_point="screening", finder="learned")
            pairs = match_nuclei(result.nuclei, pages)
            by_true, matched = dict(pairs), {k for _, k in pairs}
            rows = {r["cell_id"]: r for r in result.table}
            where = f"{root.name} {path.stem}"
            for i, page in enumerate(pages):
                if classes.get((path.stem, i)) != "abnormal":
                    continue
                k = by_true.get(i)
                called = rows[k]["predicted_class"] if k is not None else None
                if called == "abnormal":
                    continue
                ratio = (page == 1).sum() / max(1, (page == 2).sum())
                what = (f"matched, {'no verdict: ' + rows[k]['not_judgeable'] if called is None else 'called ' + called}"
                        if k is not None else "not matched" + _nearest(result, page, rows))
                source = sources.get((path.stem, i), "?")
                missed_sources[source] += 1
                missed.append(f"| {where} | {i} | {source} | {what} | {ratio:.2f} |")
            for k, row in rows.items():
                nucleus = result.nuclei == k
                if k not in matched:
                    on_true = max(((nucleus & (pg == 2)).sum() for pg in pages), default=0) / max(1, nucleus.sum())
                    false_calls[row["predicted_class"] or "no verdict"] += 1
                    false.append(f"| {where} | {k} | {row['predicted_class']} | {row['p_abnormal'] or 0:.2f} |"
                                 f" {solidity(nucleus):.2f} | {on_true:.2f} |")
                inside = sum((nucleus & (pg == 2)).sum() >= 0.5 * max(1, (pg == 2).sum()) for pg in pages)
                if inside >= 2:
                    merged.append(solidity(nucleus))
                seen = hooks.seen_as(k, nucleus)
                if seen is None:
                    continue
                if seen["unseen"]:
                    unseen[(row["predicted_class"], k in matched)] += 1
                parts += seen["part_p"]
                if seen["bare"]:
                    (r0, c0), nuc = seen["origin"], seen["nucleus"]
                    box = (slice(r0, r0 + nuc.shape[0]), slice(c0, c0 + nuc.shape[1]))
                    truth = max((pg[box] == 2 for pg in pages), key=lambda t: (t & nuc).sum())
                    bare.append(f"| {where} | {k} | {iou(nuc, truth):.2f} | {iou(seen['seed'], truth):.2f} |")
            print(where, flush=True)
    lines = ["# Where the field route's errors are, cell by cell (issue 22)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/field_misses.py --sets {' '.join(args.sets)}"
             f" --name {args.name}"
              f"{'' if args.finder_contrast is None else f' --finder-contrast {args.finder_contrast:g}'}`"), "",
             "Default settings, screening point, learned finder. Masks read for these counts only.", "",
             "### 1. Abnormal cells not caught", "",
             (f"{sum(missed_sources.values())} misses of {len(missed_sources)} distinct source cells"
              + (f"; the most repeated: {', '.join(f'{n} x {c}' for c, n in missed_sources.most_common(3))}"
                 if missed_sources else "")), "",
             "| field | page | source cell | what happened | true cytoplasm / nucleus |",
             "|---|---|---|---|---|", *missed, "",
             "### 2. False cells (matching no true nucleus)", "",
             "By call: " + (", ".join(f"{c} {n}" for c, n in sorted(false_calls.items())) or "none"), "",
             "| field | cell | called | p(abnormal) | nucleus solidity | share of its nucleus on a true nucleus |",
             "|---|---|---|---|---|---|", *false, "",
             "### 3. Reported nuclei holding two true nuclei or more", "",
             (f"{len(merged)}; solidity {', '.join(f'{s:.2f}' for s in sorted(merged))}" if merged else "none"), "",
             "### 4. Bare nuclei: IoU with the true nucleus", "", "| field | cell | reported nucleus | finder's nucleus |",
             "|---|---|---|---|", *bare, "",
             "### 5. Cells whose crop labels no pixel of the found nucleus as nucleus", "",
             "| call | matches a true nucleus | cells |", "|---|---|---|",
             *[f"| {c} | {'yes' if m else 'no'} | {n} |" for (c, m), n in sorted(unseen.items(), key=str)], "",
             "### 6. Extra nucleus-like parts of cells called normal, each classified on its own crop", "",
             (f"{len(parts)} parts; p(abnormal): {', '.join(f'{p:.2f}' for p in sorted(parts))}" if parts else "none")]
    print(write_dev_result(f"field_misses_{args.name}", lines))


if __name__ == "__main__":
    main()
