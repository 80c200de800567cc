"""Development check (issue 22, session 17, rule 11): reported nuclei under a share of their
field's median reported nucleus (rule 4's measure, MIN_NUCLEUS_SHARE; here the median over cells
with a nucleus, the tables holding no other), counted per set from
nucleus_solidity.py's per-cell tables (current defaults, so every cell counted is one rule 4 kept:
it leaves out only those lying mostly on other cells): true and false cells, and how many of each
were called abnormal. Every true cell under the share is listed.

    python benchmarks/dev/speck_shares.py --name NAME TABLE.csv [TABLE.csv ...]
    -> benchmarks/results/dev/speck_shares_NAME.md
"""

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

SHARE = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    rows = []
    for path in args.tables:
        with open(path) as f:
            rows += list(csv.DictReader(f))
    by_field = defaultdict(list)
    for r in rows:
        by_field[(r["set"], r["field"])].append(int(r["area"]))
    counts = defaultdict(lambda: defaultdict(int))
    listed = []
    for r in rows:
        median = float(np.median(by_field[(r["set"], r["field"])]))
        share = int(r["area"]) / median
        c = counts[r["set"]]
        c["cells"] += 1
        if share >= SHARE:
            continue
        kind = {"True": "true", "False": "false"}.get(r["true"], "no masks")
        c[kind] += 1
        c[kind + " called abnormal"] += r["called"] == "abnormal"
        if kind == "true":
            listed.append(f"| {r['set']} | {r['field']} | {r['cell']} | {r['called']} | {r['area']} | {median:.0f} |"
                          f" {share:.3f} |")
    lines = ["# Reported nuclei under a tenth of their field's median (issue 22, session 17)", "",
             f"## code {code_commit()}: `python benchmarks/dev/speck_shares.py --name {args.name} {' '.join(args.tables)}`",
             "", (f"Cells whose reported nucleus is under {SHARE} of the median reported nucleus of its field, at the"
                  " current defaults (rule 4 has already left out those lying mostly on other cells)."), "",
             ("| set | cells | true under | of them called abnormal | false under | of them called abnormal |"
             " under, no masks |"), "|---|---|---|---|---|---|---|"]
    for name, c in counts.items():
        lines.append(f"| {name} | {c['cells']} | {c['true']} | {c['true called abnormal']} | {c['false']} |"
                     f" {c['false called abnormal']} | {c['no masks']} |")
    lines += ["", "True cells under the share:", "", ("| set | field | cell | called | nucleus px | field median px |"
              " share |"), "|---|---|---|---|---|---|---|", *listed]
    write_dev_result(f"speck_shares_{args.name}", lines)


if __name__ == "__main__":
    main()
