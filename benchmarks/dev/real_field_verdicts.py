"""Development check (issue 22): the verdicts the field route gives on the four real unlabelled
dense fields with each classifier, at the screening point and at the most probable class. There
are no masks or labels: counts only (cells, abnormal, normal, without a verdict).

    python benchmarks/dev/real_field_verdicts.py --models default ensemble3
    -> benchmarks/results/dev/real_field_verdicts.md
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import DATA  # noqa: E402


def main() -> None:
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["default", "ensemble3"])
    args = parser.parse_args()
    lines = ["# Verdicts on the real unlabelled fields, by classifier (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/real_field_verdicts.py --models {' '.join(args.models)}`",
             "", "| classifier | operating point | cells | abnormal | normal | without a verdict |", "|---|---|---|---|---|---|"]
    fields = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted((DATA / "fields-real-unlabelled" / "images").glob("*.png"))]
    for model in args.models:
        for point in ("screening", None):
            calls = Counter()
            for rgb in fields:
                result = segment_field(rgb, model=model, operating_point=point)
                calls.update(str(row["predicted_class"]) for row in result.table)
            lines.append(f"| {model} | {point or 'most probable class'} | {sum(calls.values())} | {calls['abnormal']}"
                         f" | {calls['normal']} | {calls['None']} |")
            print(lines[-1], flush=True)
    write_dev_result("real_field_verdicts", lines)


if __name__ == "__main__":
    main()
