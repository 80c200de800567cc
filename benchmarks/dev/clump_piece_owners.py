"""Who owns the p(cell) that no found cell's extent covers, in a blob of p(cell) holding several
found cells (issue 22): a design check for giving clump cytoplasm to a cell. The true masks are
read, for this count only (a diagnostic on validation-split compositions and the ISBI development
fields; it chose the rule in benchmarks/results/finder_rule.md, which says so).

    python benchmarks/dev/clump_piece_owners.py --sets data/fields-herlev-val2 fields-isbi-dev
    -> benchmarks/results/dev/clump_piece_owners.md

Each candidate assigns every free pixel (working scale) of such a blob to one of the blob's cells,
keeps only the pieces that touch the chosen cell's extent, and is scored by the share of the
pixels it gave that lie in the true mask of the cell it gave them to ("right"), and in no true
cell at all ("background").
- ``nearest``: the cell whose extent is nearest (Euclidean);
- ``star``: the cell with the smallest star distance ratio (distance from its nucleus centre over
  its ray's length in that direction, interpolated between rays);
- ``star, p(cell) >= t``: the same, only where p(cell) >= t;
- ``star, stained``: the same, only on the classic stained-area mask (``foreground_mask``).
"""

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set, match_nuclei  # noqa: E402

CANDIDATES = ["nearest", "star", "star, p(cell) >= 0.7", "star, p(cell) >= 0.9", "star, stained"]


def main() -> None:
    import napari_cervseg.segment.finder as finder_module
    from napari_cervseg.segment.cells import foreground_mask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val2", "fields-isbi-dev"])
    args = parser.parse_args()
    finder_module.GIVE_MISSED_CYTOPLASM = False  # the free pixels as the finder leaves them
    finder = finder_module.load_finder("default")
    lines = ["# Free p(cell) in blobs of several cells: whose is it? (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/clump_piece_owners.py --sets {' '.join(args.sets)}`",
             "", "Bundled finder, working scale. Pixels are working-scale pixels.", "",
             "| set | candidate | free pixels | given | right (of given) | right (of free) | background (of given) |",
             "|---|---|---|---|---|---|---|"]
    for name in args.sets:
        tally = {c: np.zeros(4) for c in CANDIDATES}  # free, given, right, background
        for _path, rgb, pages in field_set(name):
            scale = finder.choose_scale(rgb)
            probs, rays = finder.maps(rgb, scale)
            found = finder_module.cells_from_maps(probs, rays, scale, rgb.shape[:2])
            _tally_field(rgb, pages, probs, scale, found, foreground_mask(rgb), tally)
        for c in CANDIDATES:
            free, given, right, background = tally[c]
            lines.append(f"| {name} | {c} | {int(free)} | {int(given)} | {right / max(given, 1):.3f} |"
                         f" {right / max(free, 1):.3f} | {background / max(given, 1):.3f} |")
            print(lines[-1])
    write_dev_result("clump_piece_owners", lines)


def _tally_field(rgb, pages, probs, scale, found, stained, tally) -> None:
    from napari_cervseg.segment.finder import star_ratio

    h, w = rgb.shape[:2]
    nuclei = np.zeros((h, w), np.int32)
    for k, cell in enumerate(found, 1):
        r0, c0, r1, c1 = cell.box
        nuclei[r0:r1, c0:c1][cell.nucleus] = k
    truth_of = {k: i for i, k in match_nuclei(nuclei, pages)}
    sh, sw = probs.shape[1:]
    truths = np.stack([cv2.resize((p > 0).astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
                       for p in pages])
    stained = cv2.resize(stained.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    owner = np.zeros((sh, sw), np.int32)
    for k, cell in enumerate(found, 1):
        r0, c0, r1, c1 = cell.box
        wr0, wc0 = int(r0 * scale), int(c0 * scale)
        wr1, wc1 = min(sh, int(math.ceil(r1 * scale))), min(sw, int(math.ceil(c1 * scale)))
        small = cv2.resize(cell.extent.astype(np.uint8), (wc1 - wc0, wr1 - wr0), interpolation=cv2.INTER_NEAREST)
        owner[wr0:wr1, wc0:wc1][small.astype(bool)] = k
    blobs, n_blobs = ndi.label(probs[2] >= 0.5)
    for b, box in enumerate(ndi.find_objects(blobs), start=1):
        in_blob = blobs[box] == b
        cells = [int(k) for k in np.unique(owner[box][in_blob]) if k > 0]
        stars = [k for k in cells if found[k - 1].star is not None]
        free_all = in_blob & (owner[box] == 0)
        if len(cells) < 2 or not stars or not free_all.any():
            continue
        own = owner[box]
        _, nearest_at = ndi.distance_transform_edt(own == 0, return_indices=True)
        nearest = own[nearest_at[0], nearest_at[1]]
        rows, cols = np.mgrid[box[0], box[1]].astype(np.float32)
        ratios = np.stack([star_ratio(*found[k - 1].star, rows, cols) for k in stars])
        by_star = np.asarray(stars)[ratios.argmin(0)]
        any_truth = truths[:, box[0], box[1]].any(0)
        for c in CANDIDATES:
            free = free_all.copy()
            if "p(cell)" in c:
                free &= probs[2][box] >= float(c.split(">= ")[1])
            if "stained" in c:
                free &= stained[box]
            given = np.where(free, nearest if c == "nearest" else by_star, 0)
            t = tally[c]
            t[0] += free_all.sum()
            for k in np.unique(given[given > 0]):
                parts, _ = ndi.label(given == k, structure=np.ones((3, 3)))
                touching = np.unique(parts[ndi.binary_dilation(own == k, structure=np.ones((3, 3)))])
                kept = np.isin(parts, touching[touching > 0])
                t[1] += kept.sum()
                if k in truth_of:
                    t[2] += (kept & truths[truth_of[k]][box]).sum()
                t[3] += (kept & ~any_truth).sum()


if __name__ == "__main__":
    main()
