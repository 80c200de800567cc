"""Development check (issue 22, session 13): what tells a reported nucleus that matches no true
nucleus (a false cell: mostly texture or an overlap of two cytoplasms) from one that does, using
what the route knows without masks. The masks are read only to say which cells are false.

Per reported cell, at the default settings (screening point, learned finder) with both contrast
rules off, so that every cell they would remove is seen: workflows/fields.py's
MIN_REPORTED_CONTRAST (the default since session 13, rule 3) is set to 0, and so is
segment/finder.py's MIN_NUCLEUS_CONTRAST unless --finder-contrast says otherwise (that one exists
only with benchmarks/dev/nucleus_contrast.diff applied, the rejected rules 1 and 2):
- the finder's score of its nucleus (mean p(nucleus));
- its relative contrast (reported nucleus and cell, and the finder's own): 1 - (mean grey of the nucleus) / (mean grey of a ring 2-6 px around it
  inside the cell's extent);
- its darkness against the field: its mean grey over the median of the field's reported nuclei;
- its area over the median of the field's nuclei; its solidity; p(abnormal);
- the share of its extent that other reported cells' extents cover (under_others), and that those
  of them with a reported contrast of at least KEPT_CONTRAST (or none) cover (under_kept).

For each feature the distribution over true and false cells is written (quantiles), and, for a
list of thresholds, how many false and true cells each would remove.

    python benchmarks/dev/nucleus_features.py --sets SET [SET ...] --name NAME
    -> benchmarks/results/dev/nucleus_features_NAME.md (+ .csv of every cell)
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "dev"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set, match_nuclei  # noqa: E402
from field_misses import solidity  # noqa: E402

from napari_cervseg.segment.finder import nucleus_contrast  # noqa: E402

#: see under_kept
KEPT_CONTRAST = 0.10
FEATURES = ("score", "contrast", "under_others", "under_kept", "finder_contrast", "finder_contrast_p75_wide", "finder_contrast_p90_cell", "field_darkness", "field_area", "solidity", "p_abnormal")


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(2)


def contrast_p75_wide(grey_box: np.ndarray, nucleus: np.ndarray, extent: np.ndarray) -> float:
    """As nucleus_contrast, against the 75th percentile of a wider ring (2-12 px): reaches past a
    large nucleus of which the finder found a part."""
    ring = ndi.binary_dilation(nucleus, iterations=12) & ~ndi.binary_dilation(nucleus, iterations=2) & extent
    if not ring.any() or not nucleus.any():
        return float("nan")
    return 1.0 - float(grey_box[nucleus].mean()) / float(np.percentile(grey_box[ring], 75))


def contrast_p90_cell(grey_box: np.ndarray, nucleus: np.ndarray, extent: np.ndarray) -> float:
    """As nucleus_contrast, against the 90th percentile of the whole extent beyond 2 px of the
    nucleus: the cell's palest cytoplasm."""
    rest = extent & ~ndi.binary_dilation(nucleus, iterations=2)
    if not rest.any() or not nucleus.any():
        return float("nan")
    return 1.0 - float(grey_box[nucleus].mean()) / float(np.percentile(grey_box[rest], 90))


def field_set_or_unlabelled(name: str):
    """As bench_fields.field_set; a set without masks (the real fields) gives no pages, so every
    cell counts as "false" there: read its rows for how many cells a threshold would remove."""
    import cv2

    root = Path(name) if Path(name).is_dir() else ROOT.parent / "shared" / "data" / name
    if (root / "cells").is_dir():
        yield from field_set(name)
        return
    for path in sorted((root / "images").glob("*.png")):
        yield path, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), np.zeros((0, 1, 1), np.uint8)


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.workflows import fields

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--finder-contrast", type=float, default=0.0,
                        help="segment/finder.py's MIN_NUCLEUS_CONTRAST for this run (default 0: off, every cell seen)")
    args = parser.parse_args()
    from napari_cervseg.segment import finder as finder_module

    finder_module.MIN_NUCLEUS_CONTRAST = args.finder_contrast
    fields.MIN_REPORTED_CONTRAST = 0.0
    found_seen = {}
    find_cells = fields.find_cells

    def hooked(*a, **k):
        found = find_cells(*a, **k)
        found_seen["found"] = found
        return found

    fields.find_cells = hooked
    rows = []
    for name in args.sets:
        for path, rgb, pages in field_set_or_unlabelled(name):
            result = segment_field(rgb, model="default", operating_point="screening", finder="learned")
            g = grey(rgb)
            pairs = match_nuclei(result.nuclei, pages)
            matched = {k for _, k in pairs}
            found = found_seen.get("found", [])
            per_cell = []
            whole = {}
            for rec in result.records:
                (r0, c0, r1, c1), ext = result.extent(rec.cell_id)
                whole[rec.cell_id] = np.zeros(result.cells.shape, bool)
                whole[rec.cell_id][r0:r1, c0:c1] = ext
            for rec in result.records:
                k = rec.cell_id
                nucleus = result.nuclei == k
                if not nucleus.any():
                    continue
                (r0, c0, r1, c1), ext = result.extent(k)
                inside = np.zeros(nucleus.shape, bool)
                inside[r0:r1, c0:c1] = ext
                ring = ndi.binary_dilation(nucleus, iterations=6) & ~ndi.binary_dilation(nucleus, iterations=2) & inside
                mean_n = float(g[nucleus].mean())
                contrast = 1.0 - mean_n / float(g[ring].mean()) if ring.any() else float("nan")
                score = finder_contrast = p75_wide = p90_cell = float("nan")
                best = 0
                for cell in found:
                    fr0, fc0, fr1, fc1 = cell.box
                    over = int((cell.nucleus & nucleus[fr0:fr1, fc0:fc1]).sum())
                    if over > best:
                        best, score = over, float(cell.score)
                        finder_contrast = nucleus_contrast(g[fr0:fr1, fc0:fc1], cell.nucleus, cell.extent)
                        p75_wide = contrast_p75_wide(g[fr0:fr1, fc0:fc1], cell.nucleus, cell.extent)
                        p90_cell = contrast_p90_cell(g[fr0:fr1, fc0:fc1], cell.nucleus, cell.extent)
                others = np.zeros(nucleus.shape, bool)
                for j, m in whole.items():
                    if j != k:
                        others |= m
                # how much of this cell's extent other reported cells' extents cover
                under_others = float((whole[k] & others).sum() / max(1, whole[k].sum()))
                on_true = max(((nucleus & (pg == 2)).sum() for pg in pages if pg.shape == nucleus.shape), default=0) / max(1, nucleus.sum())
                per_cell.append({"set": Path(name).name, "field": path.stem, "cell": k, "true": k in matched,
                                 "on_true": round(float(on_true), 3), "called": rec.predicted_class,
                                 "p_abnormal": float(rec.p_abnormal or 0.0), "score": score,
                                 "contrast": contrast, "under_others": under_others, "finder_contrast": finder_contrast,
                                 "finder_contrast_p75_wide": p75_wide, "finder_contrast_p90_cell": p90_cell, "mean_grey": mean_n, "area": int(nucleus.sum()),
                                 "solidity": solidity(nucleus)})
            # the share of a cell's extent covered by the other cells that a contrast rule at
            # KEPT_CONTRAST would keep (cells without a nucleus are kept)
            low = {c["cell"] for c in per_cell if c["contrast"] < KEPT_CONTRAST}
            for c in per_cell:
                kept = np.zeros(result.cells.shape, bool)
                for j, m in whole.items():
                    if j != c["cell"] and j not in low:
                        kept |= m
                c["under_kept"] = float((whole[c["cell"]] & kept).sum() / max(1, whole[c["cell"]].sum()))
            if per_cell:
                med_grey = float(np.median([c["mean_grey"] for c in per_cell]))
                med_area = float(np.median([c["area"] for c in per_cell]))
                for c in per_cell:
                    # darker than the field's typical nucleus -> below 1
                    c["field_darkness"] = c["mean_grey"] / med_grey
                    c["field_area"] = c["area"] / med_area
            rows += per_cell
            print(name, path.stem, len(per_cell), flush=True)
    out_csv = ROOT / "benchmarks" / "results" / "dev" / f"nucleus_features_{args.name}.csv"
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    true = [r for r in rows if r["true"]]
    false = [r for r in rows if not r["true"]]
    qs = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
    lines = ["# What tells a false cell's nucleus from a true one (issue 22, session 13)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/nucleus_features.py --sets {' '.join(args.sets)}"
              f" --name {args.name}`"), "",
             (f"{len(true)} reported cells matching a true nucleus, {len(false)} matching none "
             f"({sum(r['on_true'] < 0.1 for r in false)} of them with under a tenth of their nucleus on a true "
             "nucleus). Masks read only to say which is which. Every cell: "
             f"`benchmarks/results/dev/{out_csv.name}`."), "",
             "| feature | cells | " + " | ".join(f"q{q:g}" for q in qs) + " |", "|---|---|" + "---|" * len(qs)]
    for feat in FEATURES:
        for label, group in (("true", true), ("false", false)):
            vals = np.array([r[feat] for r in group if np.isfinite(r[feat])])
            if len(vals):
                lines.append(f"| {feat} | {label} ({len(vals)}) | " + " | ".join(f"{np.quantile(vals, q):.3f}" for q in qs)
                             + " |")
    print(write_dev_result(f"nucleus_features_{args.name}", lines))


if __name__ == "__main__":
    main()
