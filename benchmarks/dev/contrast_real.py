"""Development check (issue 22, session 13): what MIN_NUCLEUS_CONTRAST removes on fields without
masks. The learned finder runs on each field with the rule off; every found nucleus whose contrast
(`segment.finder.nucleus_contrast`) is under the threshold is pictured, its nucleus outlined in
yellow and its cell's extent in cyan, on a crop with the cell's box widened by half its size; and
again without outlines, 200 x 200 px of the field around the nucleus's centre (red dot) at 2x,
to see what lies there (``contrast_NAME_context.png``).

    python benchmarks/dev/contrast_real.py [--set fields-real-unlabelled] [--name real] [--threshold 0.08]
    -> benchmarks/results/dev/contrast_NAME.md and contrast_NAME.png

    python benchmarks/dev/contrast_real.py --route --name real_route
    -> what the field route, at its defaults, leaves out (FieldResult.left_out), each pictured
       200 px around its centre at 2x (contrast_real_route.png). The committed
       contrast_real_route.md was made with rule 2 of benchmarks/dev/nucleus_contrast.diff (every
       pale nucleus left out, rejected); contrast_real_under_others.md with rule 3, the default.
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

TILE = 220


def main() -> None:
    from napari_cervseg.segment import finder as finder_module
    from napari_cervseg.segment.finder import load_finder, nucleus_contrast

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="fields-real-unlabelled")
    parser.add_argument("--name", default="real")
    parser.add_argument("--threshold", type=float, default=0.08, help="the finder's contrast threshold pictured")
    parser.add_argument("--route", action="store_true", help="picture what the field route leaves out instead")
    args = parser.parse_args()
    threshold = args.threshold
    root = Path(args.set) if Path(args.set).is_dir() else ROOT.parent / "shared" / "data" / args.set
    if args.route:
        route_left_out(root, args)
        return
    finder = load_finder("default")
    finder_module.MIN_NUCLEUS_CONTRAST = 0.0  # (only where nucleus_contrast.diff is applied)
    rows, tiles, context, total = [], [], [], 0
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        found = finder.find(rgb)
        total += sum(c.nucleus.any() for c in found)
        for cell in found:
            if not cell.nucleus.any():
                continue
            r0, c0, r1, c1 = cell.box
            contrast = nucleus_contrast(rgb[r0:r1, c0:c1], cell.nucleus, cell.extent)
            if not contrast < threshold:
                continue
            m = max(r1 - r0, c1 - c0) // 2
            R0, C0 = max(0, r0 - m), max(0, c0 - m)
            R1, C1 = min(rgb.shape[0], r1 + m), min(rgb.shape[1], c1 + m)
            crop = rgb[R0:R1, C0:C1].copy()
            for mask, colour in ((cell.extent, (0, 255, 255)), (cell.nucleus, (255, 255, 0))):
                full = np.zeros(crop.shape[:2], np.uint8)
                full[r0 - R0:r1 - R0, c0 - C0:c1 - C0] = mask
                contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(crop, contours, -1, colour, 1)
            f = TILE / max(crop.shape[:2])
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))))
            tile = np.full((TILE + 20, TILE, 3), 255, np.uint8)
            tile[:crop.shape[0], :crop.shape[1]] = crop
            cv2.putText(tile, f"{path.stem} {len(rows) + 1} c={contrast:.3f}", (2, TILE + 14),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
            tiles.append(tile)
            context.append(context_tile(rgb, cell.centre))
            rows.append(f"| {len(rows) + 1} | {path.stem} | {cell.centre[0]:.0f}, {cell.centre[1]:.0f} |"
                        f" {contrast:.3f} | {cell.score:.2f} | {int(cell.nucleus.sum())} |")
        print(path.stem, flush=True)
    png = ROOT / "benchmarks" / "results" / "dev" / f"contrast_{args.name}.png"
    if tiles:
        per_row = 4
        tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % per_row)
        grid = np.vstack([np.hstack(tiles[i:i + per_row]) for i in range(0, len(tiles), per_row)])
        cv2.imwrite(str(png), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        wide = np.vstack([np.hstack(context[i:i + per_row] + [np.full_like(context[0], 255)] * (
            per_row - len(context[i:i + per_row]))) for i in range(0, len(context), per_row)])
        cv2.imwrite(str(png.with_name(f"contrast_{args.name}_context.png")), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    lines = [f"# What a nucleus contrast under {threshold} removes on {root.name} (issue 22, session 13)", "",
             f"## code {code_commit()}: `python benchmarks/dev/contrast_real.py --set {args.set} --name {args.name}`",
             "",
             (f"{len(rows)} of {total} found nuclei are under {threshold} (the finder alone, before the field route's"
             f" crops). Pictured in `{png.name}` (nucleus yellow, the cell's extent cyan) and, 200 px around each"
              f" centre (red dot) at 2x, in `contrast_{args.name}_context.png`."), "",
             "| # | field | centre (row, col) | contrast | finder score | nucleus px |", "|---|---|---|---|---|---|",
             *rows]
    print(write_dev_result(f"contrast_{args.name}", lines))


def context_tile(rgb: np.ndarray, centre) -> np.ndarray:
    """200 x 200 px of ``rgb`` around ``centre`` (a red dot on it), at 2x."""
    cr, cc = (round(v) for v in centre)
    r0, c0 = max(0, cr - 100), max(0, cc - 100)
    around = np.full((200, 200, 3), 255, np.uint8)
    piece = rgb[r0:r0 + 200, c0:c0 + 200]
    around[:piece.shape[0], :piece.shape[1]] = piece
    cv2.circle(around, (cc - c0, cr - r0), 3, (255, 0, 0), -1)
    return cv2.resize(around, (400, 400), interpolation=cv2.INTER_NEAREST)


def route_left_out(root: Path, args) -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.workflows import fields

    rows, tiles = [], []
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        result = segment_field(rgb, operating_point="screening")
        for centre in result.left_out:
            tiles.append(context_tile(rgb, centre))
            rows.append(f"| {len(tiles)} | {path.stem} | {centre[0]:.0f}, {centre[1]:.0f} |")
        rows.append(f"| | {path.stem}: {result.n_cells} cells reported, {len(result.abnormal_ids)} abnormal,"
                    f" {len(result.no_verdict_ids)} without verdict, {len(result.left_out)} left out | |")
        print(rows[-1], flush=True)
    png = ROOT / "benchmarks" / "results" / "dev" / f"contrast_{args.name}.png"
    if tiles:
        per_row = 4
        tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % per_row)
        cv2.imwrite(str(png), cv2.cvtColor(np.vstack([np.hstack(tiles[i:i + per_row])
                                                      for i in range(0, len(tiles), per_row)]), cv2.COLOR_RGB2BGR))
    lines = [f"# What the field route leaves out on {root.name} (issue 22, session 13)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/contrast_real.py --route --set {args.set}"
              f" --name {args.name}`"), "",
             (f"Defaults, screening point; MIN_REPORTED_CONTRAST = {getattr(fields, 'MIN_REPORTED_CONTRAST', 'none')}."
              " Each left-out"
              f" centre pictured 200 px around it at 2x in `{png.name}` (red dot)."), "",
             "| # | field | centre (row, col) |", "|---|---|---|", *rows]
    print(write_dev_result(f"contrast_{args.name}", lines))


if __name__ == "__main__":
    main()
