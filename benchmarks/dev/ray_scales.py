"""Would the finder's rays of large cells come closer to their targets when read from a second look
at half the scale (issue 22)? Fields are composed from the **training split's** cells as `cervseg
train-finder` composes them (pseudo-labels; no mask is read), with a seed training did not use.
For each placed cell whose nucleus the finder finds, the star polygon from its nucleus centre is
drawn from: the rays at the working scale ("full"), the rays of the same field looked at half as
large, doubled ("half"), each ray's larger of the two ("max"), and "half" for cells whose full
rays' median exceeds L working px ("switch at L"). Each is scored by its IoU with the polygon of
the target rays (the composed cell's extent from the same centre), within the field.

    python benchmarks/dev/ray_scales.py [--fields 150] -> benchmarks/results/dev/ray_scales.md
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "dev"))
from _common import code_commit, write_dev_result  # noqa: E402
from ray_bias import fields_with_maps, training_split_cells  # noqa: E402

SWITCHES = (20, 30, 40, 50)


def polygon_mask(centre, distances, shape) -> np.ndarray:
    from napari_cervseg.segment.finder import ray_directions

    dirs = ray_directions(len(distances))
    points = np.stack([centre[1] + distances * dirs[:, 1], centre[0] + distances * dirs[:, 0]], 1)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def rays_near(rays, nucleus_found, centre, factor: float):
    """The rays (working px of the field) averaged over nucleus pixels within 2 px of ``centre``
    on maps made at ``factor`` of the field's size; None when there are none."""
    cy, cx = centre[0] * factor, centre[1] * factor
    r0, c0 = max(0, int(cy) - 3), max(0, int(cx) - 3)
    window = nucleus_found[r0:int(cy) + 4, c0:int(cx) + 4]
    rr, cc = np.nonzero(window)
    rr, cc = rr + r0, cc + c0
    near = (rr - cy) ** 2 + (cc - cx) ** 2 <= 4.0
    if not near.any():
        return None
    return rays[:, rr[near], cc[near]].mean(1) / factor


def main() -> None:
    from napari_cervseg.segment.finder import star_distances

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    cells = training_split_cells()
    names = ["full", "half", "max"] + [f"switch at {s}" for s in SWITCHES]
    scores = {n: [] for n in names}
    sizes = []
    for rgb, finder, probs, rays, found in fields_with_maps(cells, args.fields, args.seed):
        half_probs, half_rays = finder.maps(rgb, 0.5)
        for cell_mask, own in found:
            rr, cc = np.nonzero(own)
            centre = (rr.mean(), cc.mean())
            full = rays_near(rays, probs[0] >= 0.5, centre, 1.0)
            half = rays_near(half_rays, half_probs[0] >= 0.5, centre, 0.5)
            if full is None:
                continue
            half = full if half is None else half
            target = polygon_mask(centre, star_distances(cell_mask, np.array([centre]), len(full))[0], rgb.shape[:2])
            median = float(np.median(full))
            candidates = {"full": full, "half": half, "max": np.maximum(full, half)}
            candidates.update({f"switch at {s}": half if median > s else full for s in SWITCHES})
            for n, d in candidates.items():
                drawn = polygon_mask(centre, d, rgb.shape[:2])
                scores[n].append((drawn & target).sum() / max(1, (drawn | target).sum()))
            sizes.append(median)
    size = np.array(sizes)
    bins = ((0, 30), (30, 40), (40, 50), (50, 1000))
    lines = ["# The finder's rays at its working scale and at half of it (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/ray_scales.py --fields {args.fields} --seed {args.seed}`",
             "", (f"{len(cells)} training-split cells pseudo-labelled; {args.fields} fields composed; {size.size} cells"
                  " whose nucleus the finder found. Mean IoU of each candidate's star polygon with the target's,"
                  " by the full rays' median (working px)."), "",
             "| rays | all | " + " | ".join(f"{lo}-{hi if hi < 1000 else ''} ({int(((size >= lo) & (size < hi)).sum())})"
                                         for lo, hi in bins) + " |",
             "|---|---|" + "---|" * len(bins)]
    for n in names:
        v = np.array(scores[n])
        lines.append(f"| {n} | {v.mean():.3f} | "
                     + " | ".join(f"{v[(size >= lo) & (size < hi)].mean():.3f}" if ((size >= lo) & (size < hi)).any()
                                  else "-" for lo, hi in bins) + " |")
    print("\n".join(lines))
    write_dev_result("ray_scales", lines)


if __name__ == "__main__":
    main()
