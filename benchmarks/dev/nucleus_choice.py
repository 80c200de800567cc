"""Dev check (issue 22): which nucleus should a field cell report, the crop's (the segmenter's,
as the field route does now) or the finder's? Counted on the validation-split compositions: true
nuclei matched (IoU >= 0.5) by the route's choice, by the finder's nucleus alone, by a per-cell
oracle taking the better one, and by a score without masks (the contrast across the nucleus's
boundary inside the cell). The masks are read for this count only; it chose nothing, and the
contrast choice was not built.

    python benchmarks/dev/nucleus_choice.py [--sets data/fields-herlev-val ...]
    -> benchmarks/results/dev/nucleus_choice.md
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set  # noqa: E402

SETS = ["data/fields-herlev-val", "data/fields-herlev-val2", "data/fields-herlev-val3",
        "data/fields-herlev-val-large", "data/fields-herlev-val-large2"]


def best_match(mask: np.ndarray, true_nuclei: np.ndarray) -> tuple[float, int]:
    """(IoU, page) of the true nucleus (pages of bool masks, crop frame) that ``mask`` matches best."""
    if not mask.any():
        return 0.0, -1
    inter = (true_nuclei & mask).sum((1, 2))
    iou = inter / np.maximum((true_nuclei | mask).sum((1, 2)), 1)
    k = int(np.argmax(iou))
    return float(iou[k]), k


def boundary_contrast(grey: np.ndarray, mask: np.ndarray, cell: np.ndarray, ring: int = 4) -> float:
    """How much darker the nucleus is than a ring of its own cell around it, in pooled SDs."""
    kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    around = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask & cell
    if not mask.any() or around.sum() < 10:
        return -np.inf
    a, b = grey[around], grey[mask]
    return float((a.mean() - b.mean()) / np.sqrt(0.5 * (a.var() + b.var()) + 1))


def main() -> None:
    import napari_cervseg.workflows.fields as fields_route
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=SETS)
    args = parser.parse_args()
    seen: list[dict] = []
    state: dict = {}
    in_crop, own_nucleus = fields_route._in_crop, fields_route._own_nucleus

    def in_crop_kept(cell, shape):
        out = in_crop(cell, shape)
        state["box"] = out[0]
        return out

    def own_nucleus_kept(result, region, seed):
        chosen = own_nucleus(result, region, seed)
        seen.append({"box": state["box"], "seed": (seed & region).copy(), "chosen": chosen.copy(),
                     "cell": (region | chosen).copy()})
        return chosen

    fields_route._in_crop, fields_route._own_nucleus = in_crop_kept, own_nucleus_kept
    lines = ["# The crop's nucleus or the finder's? (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/nucleus_choice.py --sets {' '.join(args.sets)}`", "",
             "Default route, screening point. A cell counts when its nucleus matches a true one at IoU >= 0.5.", "",
             ("| set | true cells | cells | matched: route (crop's) | finder's alone | better of the two (oracle) |"
             " by boundary contrast |"), "|---|---|---|---|---|---|---|"]
    where_one_is_right = []
    totals = np.zeros(6, int)
    for name in args.sets:
        counts = np.zeros(6, int)
        for path, rgb, pages in field_set(name):
            seen.clear()
            segment_field(rgb, operating_point="screening")
            grey = cv2.GaussianBlur(rgb.astype(np.float32).mean(2), (0, 0), 1)
            background = np.median(rgb.reshape(-1, 3)[grey.ravel() >= np.percentile(grey, 90)], 0)
            counts[0] += len(pages)
            counts[1] += len(seen)
            for look in seen:
                r0, c0, r1, c1 = look["box"]
                truth = pages[:, r0:r1, c0:c1] == 2
                route, finder = best_match(look["chosen"], truth), best_match(look["seed"], truth)
                contrast = [boundary_contrast(grey[r0:r1, c0:c1], m, look["cell"]) for m in (look["seed"], look["chosen"])]
                by_contrast = finder if contrast[0] > contrast[1] else route
                counts[2:] += [route[0] >= 0.5, finder[0] >= 0.5, max(route[0], finder[0]) >= 0.5, by_contrast[0] >= 0.5]
                if (route[0] >= 0.5) != (finder[0] >= 0.5):
                    where_one_is_right.append(
                        f"| {Path(name).name} | {path.stem} | {route[0]:.2f} | {finder[0]:.2f} |"
                        f" {look['chosen'].sum() / max(1, look['seed'].sum()):.2f} | {tuple(int(v) for v in background)} |")
        totals += counts
        lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in counts) + " |")
        print(lines[-1], flush=True)
    lines.append("| all | " + " | ".join(str(int(v)) for v in totals) + " |")
    lines += ["", ("Cells where exactly one of the two nuclei matches (IoU of each with its best true nucleus; area"
              " ratio route / finder; the field's slide colour, median of its brightest tenth):"), "",
              "| set | field | IoU, route | IoU, finder | area ratio | slide RGB |", "|---|---|---|---|---|---|",
              *where_one_is_right]
    write_dev_result("nucleus_choice", lines)


if __name__ == "__main__":
    main()
