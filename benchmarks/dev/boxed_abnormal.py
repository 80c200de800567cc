"""Development check (issue 22, session 13): does a switch of the finder hide abnormal cells that
the nucleus-matched "abnormal caught" does not count? A cell found through a wrong "nucleus"
(texture on its cytoplasm) and called abnormal still puts a red box on the right cell; the
nucleus match scores it as a false cell. Here each true abnormal cell is **boxed** when it is
caught (its nucleus matched and called abnormal) or when a reported cell called abnormal has an
extent with whole-cell Dice > 0.7 on it. Counted with segment/finder.py's MIN_NUCLEUS_CONTRAST at
each value given (an option of benchmarks/dev/nucleus_contrast.diff, the rejected finder contrast
rule: apply it first, or every value gives the default route). Masks read for these counts only.

    python benchmarks/dev/boxed_abnormal.py --sets SET [SET ...] --name NAME [--contrasts 0 0.08]
    -> benchmarks/results/dev/boxed_abnormal_NAME.md
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bare_nucleus_verdicts import classes_of  # noqa: E402
from bench_fields import DATA, dice, extent_mask, field_set, match_nuclei  # noqa: E402


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.segment import finder as finder_module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--contrasts", nargs="+", type=float, default=[0.0, 0.08])
    args = parser.parse_args()
    lines = ["# Abnormal cells boxed, nucleus matched or not (issue 22, session 13)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/boxed_abnormal.py --sets {' '.join(args.sets)}"
              f" --name {args.name} --contrasts {' '.join(f'{c:g}' for c in args.contrasts)}`"), "",
             ("Default settings, screening point, learned finder. Boxed = caught, or a cell called abnormal has an"
             " extent with Dice > 0.7 on it. Covered = any reported extent with Dice > 0.7 on it."), "",
             ("| set | MIN_NUCLEUS_CONTRAST | abnormal cells | caught | boxed | normal cells covered |"
             " abnormal cells covered |"), "|---|---|---|---|---|---|---|"]
    for name in args.sets:
        root = Path(name) if Path(name).is_dir() else DATA / name
        classes = classes_of(root)
        for contrast in args.contrasts:
            finder_module.MIN_NUCLEUS_CONTRAST = contrast
            n_abn = caught = boxed = cov_n = cov_a = 0
            for path, rgb, pages in field_set(name):
                result = segment_field(rgb, model="default", operating_point="screening", finder="learned")
                by_true = dict(match_nuclei(result.nuclei, pages))
                rows = {r["cell_id"]: r for r in result.table}
                extents = {k: extent_mask(result, k, result.cells.shape) for k in rows}
                for i, page in enumerate(pages):
                    truth = page > 0
                    near = {k: dice(e, truth) for k, e in extents.items() if (e & truth).any()}
                    covered = any(d > 0.7 for d in near.values())
                    label = classes.get((path.stem, i))
                    if label == "abnormal":
                        n_abn += 1
                        k = by_true.get(i)
                        hit = k is not None and rows[k]["predicted_class"] == "abnormal"
                        caught += hit
                        boxed += hit or any(d > 0.7 and rows[j]["predicted_class"] == "abnormal"
                                            for j, d in near.items())
                        cov_a += covered
                    elif label == "normal":
                        cov_n += covered
            lines.append(f"| {root.name} | {contrast:g} | {n_abn} | {caught} | {boxed} | {cov_n} | {cov_a} |")
            print(lines[-1], flush=True)
    print(write_dev_result(f"boxed_abnormal_{args.name}", lines))


if __name__ == "__main__":
    main()
