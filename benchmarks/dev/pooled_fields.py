"""Pool bench_fields result files' sets into one figure per set and one over all (issue 22): the
held-out estimate of the default route over several fresh compositions.

Nucleus precision / recall / F1 pooled from the matched pairs (true, found, pairs); whole-cell
Dice and class figures weighted by the cells they are taken over; abnormal caught pooled over the
abnormal cells.

    python benchmarks/dev/pooled_fields.py --name NAME FILE.json [FILE.json ...]
    -> benchmarks/results/dev/pooled_fields_NAME.md
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402


def _row(name: str, s: dict) -> str:
    tp, found, true = s["pairs"], s["predicted_cells"], s["true_cells"]
    p, r = tp / max(1, found), tp / max(1, true)
    f1 = 2 * tp / max(1, found + true)
    return (f"| {name} | {s['fields']} | {true} | {found} | {tp} | {p:.3f} | {r:.3f} | **{f1:.3f}** |"
            f" {s['cell_dice']:.3f} | {s['cells_covered_dice_0.7']:.3f} | {s['abnormal_caught']:.3f} |"
            f" {s['cell_accuracy_matched']:.3f} | {s['seconds_per_cell']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    sets = {}
    for path in args.files:
        # (sets without class figures, the ISBI fields, are left out: these are Herlev pools)
        sets.update({k: v for k, v in json.loads(Path(path).read_text())["sets"].items() if "abnormal_cells" in v})
    total = {"fields": 0, "true_cells": 0, "predicted_cells": 0, "pairs": 0, "abnormal_cells": 0}
    weighted = {"cell_dice": "pairs", "cells_covered_dice_0.7": "true_cells", "abnormal_caught": "abnormal_cells",
                "cell_accuracy_matched": "cells_matched_with_class", "seconds_per_cell": "predicted_cells"}
    sums = dict.fromkeys(weighted, 0.0)
    weights = dict.fromkeys(weighted, 0)
    for s in sets.values():
        for k in total:
            total[k] += s[k]
        for k, w in weighted.items():
            sums[k] += s[k] * s[w]
            weights[k] += s[w]
    total.update({k: sums[k] / max(1, weights[k]) for k in weighted})
    lines = ["# Pooled field figures (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/pooled_fields.py --name {args.name} {' '.join(args.files)}`",
             "", ("| set | fields | true cells | found | matched | nucleus P | nucleus R | nucleus F1 | cell Dice (extent)"
             " | covered (Dice>0.7) | abnormal caught | accuracy (matched) | s / cell |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
             *[_row(name, s) for name, s in sets.items()], _row("**pooled**", total)]
    write_dev_result(f"pooled_fields_{args.name}", lines)


if __name__ == "__main__":
    main()
