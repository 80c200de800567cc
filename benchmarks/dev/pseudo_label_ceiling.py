"""Development check (issue 22): how often the self-trained segmenter, whose output is the only
supervision of the learned finder and which segments each found cell in a field, gets a test-split
single cell's nucleus right in the field benchmark's sense (IoU >= 0.5, that is Dice >= 2/3).

    .venv/bin/python benchmarks/dev/pseudo_label_ceiling.py

Reads the per-image nucleus Dice of `cervseg evaluate --split test` (benchmarks/results/eval_test.json,
method "self-trained"; the masks were read there only to score). Writes
benchmarks/results/dev/pseudo_label_ceiling.md.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import RESULTS, code_commit, write_dev_result  # noqa: E402


def main():
    report = json.loads((RESULTS / "eval_test.json").read_text())
    rows = report["segmentation"]["self-trained"]["per_image"]
    dice = [r["nucleus"] for r in rows]
    right = sum(d >= 2 / 3 for d in dice)
    lines = ["# The pseudo-labels' ceiling for field nucleus matching (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/pseudo_label_ceiling.py`", "",
             f"Source: `{report['settings']['command']}`", "",
             (f"Self-trained segmenter, test-split single cells: {right} of {len(dice)} nuclei at IoU >= 0.5"
              f" (Dice >= 2/3): **{right / len(dice):.3f}**. A field's nucleus recall at IoU >= 0.5 can pass this"
              " only where a cell in a field is segmented better than alone.")]
    print("\n".join(lines))
    write_dev_result("pseudo_label_ceiling", lines)


if __name__ == "__main__":
    main()
