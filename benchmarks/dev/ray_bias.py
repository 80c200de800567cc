"""Are the bundled finder's rays short of its own training targets (issue 22)? Fields are composed
from the **training split's** cells as `cervseg train-finder` composes them (pseudo-labels of the
self-trained segmenter; no mask is read), with a seed training did not use; for each placed cell
whose nucleus shows, the finder's rays (averaged near the nucleus centre, as `cells_from_maps`
reads them) are compared with the star distances of the cell's composed extent from that centre.

    python benchmarks/dev/ray_bias.py [--fields 60] -> benchmarks/results/dev/ray_bias.md
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import DATA  # noqa: E402


def training_split_cells() -> list:
    """The bundled classifier's training-split Herlev cells, pseudo-labelled as `cervseg
    train-finder` labels them (no mask read)."""
    from napari_cervseg.classify import load_model
    from napari_cervseg.io.datasets import read_dataset
    from napari_cervseg.workflows.finder_training import training_cells

    train = set(load_model("default").card["training"]["split"]["train"])
    samples = [s for s in read_dataset(DATA / "herlev") if s.name in train]
    return training_cells([s.load_image() for s in samples])


def fields_with_maps(cells: list, fields: int, seed: int):
    """``fields`` fields composed from ``cells`` (seed ``seed``), each with the bundled finder's
    maps at full scale: (rgb, finder, probs, rays, [(cell mask, its nucleus pixels the finder
    found)] for each placed cell whose found nucleus has at least 8 px)."""
    from napari_cervseg.segment.finder import load_finder
    from napari_cervseg.workflows.finder_training import FinderTrainConfig, compose_field

    finder = load_finder("default")
    config = FinderTrainConfig()
    rng = np.random.default_rng(seed)
    for _ in range(fields):
        rgb, _, _, info = compose_field(cells, rng, config)
        probs, rays = finder.maps(rgb, 1.0)
        found = [(cell_mask, nucleus & (probs[0] >= 0.5)) for _, cell_mask, nucleus in info["placed"]]
        yield rgb, finder, probs, rays, [(cell_mask, own) for cell_mask, own in found if own.sum() >= 8]


def main() -> None:
    from napari_cervseg.segment.finder import ray_directions, star_distances

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    cells = training_split_cells()
    factors, area_factors, radii, predicted_radii = [], [], [], []
    for rgb, _, _, rays, found in fields_with_maps(cells, args.fields, args.seed):
        for cell_mask, own in found:
            rr, cc = np.nonzero(own)
            centre = np.array([rr.mean(), cc.mean()])
            near = (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= 4.0
            if not near.any():
                continue
            predicted = rays[:, rr[near], cc[near]].mean(1)
            target = star_distances(cell_mask, centre[None], len(predicted))[0]
            # only rays that end inside the field (a cell cut by the field's edge says nothing there)
            ends = centre[None] + target[:, None] * ray_directions(len(target))
            inside = (ends >= 1).all(1) & (ends[:, 0] < rgb.shape[0] - 1) & (ends[:, 1] < rgb.shape[1] - 1)
            if inside.sum() < len(target) // 2:
                continue
            factors.append(float(np.median(target[inside] / np.maximum(predicted[inside], 1.0))))
            radii.append(float(np.median(target[inside])))
            predicted_radii.append(float(np.median(predicted[inside])))
            area_factors.append(float(np.sqrt((target[inside] ** 2).sum() / np.maximum((predicted[inside] ** 2).sum(), 1.0))))
    f, a = np.array(factors), np.array(area_factors)
    lines = ["# The finder's rays against its training targets (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/ray_bias.py --fields {args.fields} --seed {args.seed}`", "",
             (f"{len(cells)} training-split cells pseudo-labelled; {args.fields} fields composed (seed {args.seed});"
              f" {f.size} cells whose nucleus the finder found."), "",
             "| per cell: target over predicted | median | quartiles | mean |", "|---|---|---|---|",
             (f"| median over its rays | {np.median(f):.3f} | {np.percentile(f, 25):.3f} - {np.percentile(f, 75):.3f} |"
             f" {f.mean():.3f} |"),
             (f"| square root of the polygons' areas | {np.median(a):.3f} | {np.percentile(a, 25):.3f} -"
             f" {np.percentile(a, 75):.3f} | {a.mean():.3f} |")]
    r = np.array(radii)
    lines += ["", "By the cell's size (its target rays' median, working px):", "",
              "| median target ray | cells | median of target over predicted (rays' median) |", "|---|---|---|"]
    for lo, hi in ((0, 30), (30, 45), (45, 60), (60, 80), (80, 1000)):
        at = (r >= lo) & (r < hi)
        if at.any():
            lines.append(f"| {lo}-{hi if hi < 1000 else ''} | {int(at.sum())} | {np.median(f[at]):.3f} |")
    p = np.array(predicted_radii)
    lines += ["", ("By the finder's own ray length (the predicted rays' median, working px): what a calibration"
              " could read"), "",
              "| median predicted ray | cells | median of target over predicted | quartiles |", "|---|---|---|---|"]
    for lo, hi in ((0, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 1000)):
        at = (p >= lo) & (p < hi)
        if at.any():
            lines.append(f"| {lo}-{hi if hi < 1000 else ''} | {int(at.sum())} | {np.median(f[at]):.3f} |"
                         f" {np.percentile(f[at], 25):.3f} - {np.percentile(f[at], 75):.3f} |")
    print("\n".join(lines))
    write_dev_result("ray_bias", lines)


if __name__ == "__main__":
    main()
