"""Which matched cells get a low whole-cell Dice on the validation-split Herlev fields, and whether
their extent is too small or too large (issue 22). The masks are read for this count only.

    python benchmarks/dev/extent_errors.py [--sets data/fields-herlev-val2]
    -> benchmarks/results/dev/extent_errors.md
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import dice, extent_mask, field_set, match_nuclei  # noqa: E402


def main() -> None:
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val2"])
    args = parser.parse_args()
    lines = ["# Whole-cell Dice of matched cells: too small or too large? (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/extent_errors.py --sets {' '.join(args.sets)}`", "",
             ("Default finder and classifier, screening point. A cell is \"too small\" when its extent has fewer"
              " pixels than its true mask."), "",
             "| set | matched cells | mean Dice | Dice < 0.8 | of those too small | mean Dice if those were 0.9 |",
             "|---|---|---|---|---|---|"]
    for name in args.sets:
        scores, small = [], []
        for _path, rgb, pages in field_set(str(ROOT / name) if (ROOT / name).is_dir() else name):
            result = segment_field(rgb, operating_point="screening")
            for i, k in match_nuclei(result.nuclei, pages):
                extent, truth = extent_mask(result, k, result.cells.shape), pages[i] > 0
                scores.append(dice(extent, truth))
                small.append(extent.sum() < truth.sum())
        d, small = np.array(scores), np.array(small)
        low = d < 0.8
        lines.append(f"| {name} | {d.size} | {d.mean():.3f} | {int(low.sum())} | {int((low & small).sum())} |"
                     f" {np.where(low, 0.9, d).mean():.3f} |")
        print(lines[-1])
    write_dev_result("extent_errors", lines)


if __name__ == "__main__":
    main()
