"""Development check (issue 22, session 17): does an irregular reported nucleus (low solidity)
tell a false cell from a true one at the current defaults?

Session 13's table (`dev/nucleus_features_val.md`, older code, contrast rules off) showed the
reported nucleus's solidity below 0.85 for 50 false cells and 2 true ones on the validation
compositions. This rerun, at the current defaults (screening point, learned finder), writes per
reported cell: whether it matches a true nucleus (IoU >= 0.5), the largest share of its nucleus on
one true nucleus, its call and p(abnormal), its nucleus's area and solidity (largest piece), and
the share of its extent that the other reported cells' extents cover (under_others). Then, for a
few solidity levels, how many true and false cells lie under them, alone and when also at least
half under other cells. The masks are read only to say which cells are true; sets without masks
(the real unlabelled fields) get counts only.

    python benchmarks/dev/nucleus_solidity.py --sets SET [SET ...] --name NAME
    -> benchmarks/results/dev/nucleus_solidity_NAME.md (+ .csv of every cell)
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "dev"))
from _common import RESULTS, code_commit, write_dev_result  # noqa: E402
from bench_fields import extent_mask, field_images, match_nuclei  # noqa: E402
from field_misses import solidity  # noqa: E402

LEVELS = (0.75, 0.8, 0.82, 0.85, 0.87, 0.9)
UNDER = 0.5


def main() -> None:
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    rows = []
    for name in args.sets:
        for path, rgb, pages in field_images(name):
            result = segment_field(rgb, model="default", operating_point="screening", finder="learned")
            matched = {k for _, k in match_nuclei(result.nuclei, pages)} if pages is not None else set()
            extents = {row["cell_id"]: extent_mask(result, row["cell_id"], rgb.shape[:2]) for row in result.table}
            coverage = np.sum(list(extents.values()), axis=0, dtype=np.int32) if extents else None
            for row in result.table:
                k = row["cell_id"]
                nucleus = result.nuclei == k
                if not nucleus.any():
                    continue
                others = coverage - extents[k] > 0  # under another cell's extent
                under = float((extents[k] & others).sum() / max(1, extents[k].sum()))
                on_true = (max(((nucleus & (page == 2)).sum() for page in pages), default=0) / nucleus.sum()
                           if pages is not None else float("nan"))
                rows.append({"set": Path(name).name, "field": path.stem, "cell": k,
                             "true": (k in matched) if pages is not None else "",
                             "on_true": round(float(on_true), 3), "called": row["predicted_class"],
                             "p_abnormal": row.get("p_abnormal"), "area": int(nucleus.sum()),
                             "solidity": round(solidity(nucleus), 4), "under_others": round(under, 3)})
            print(path, len(rows), flush=True)
    csv_path = RESULTS / "dev" / f"nucleus_solidity_{args.name}.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# An irregular reported nucleus: true and false cells by solidity (issue 22, session 17)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/nucleus_solidity.py --sets {' '.join(args.sets)}"
              f" --name {args.name}`"), "",
             ("Default settings, screening point, learned finder. Masks read only to say which cells are true."
             f" Every cell: `{csv_path.name}`. 'under' = at least {UNDER} of the extent under other reported cells."), "",
             ("| set | level | true below | of them abnormal | true below and under | false below | false below and under |"
             " cells below (no masks) |"),
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted({r["set"] for r in rows}):
        cells = [r for r in rows if r["set"] == name]
        for level in LEVELS:
            low = [r for r in cells if r["solidity"] < level]
            if cells[0]["true"] == "":
                lines.append(f"| {name} ({len(cells)}) | {level} | | | | | | {len(low)} "
                             f"({sum(r['under_others'] >= UNDER for r in low)} under) |")
                continue
            true = [r for r in low if r["true"]]
            false = [r for r in low if not r["true"]]
            lines.append(f"| {name} ({sum(r['true'] for r in cells)} true, {sum(not r['true'] for r in cells)} false)"
                         f" | {level} | {len(true)} | {sum(r['called'] == 'abnormal' for r in true)} |"
                         f" {sum(r['under_others'] >= UNDER for r in true)} | {len(false)} |"
                         f" {sum(r['under_others'] >= UNDER for r in false)} | |")
    write_dev_result(f"nucleus_solidity_{args.name}", lines)


if __name__ == "__main__":
    main()
