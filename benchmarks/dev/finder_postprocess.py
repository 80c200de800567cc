"""Development check (issue 22): the learned finder's post-processing and working scale, scored on
the development fields (the choice is reported as tuned on them; held-out fields may differ).

    .venv/bin/python benchmarks/dev/finder_postprocess.py

Writes benchmarks/results/dev/finder_postprocess.md.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from bench_fields import FixedScale, evaluate_set  # noqa: E402

from napari_cervseg.segment import finder as finder_module  # noqa: E402

VARIANTS = [  # (working scale, MIN_NUCLEUS_SCORE, MAX_DUPLICATE_IOU)
    (0.5, 0.0, 1.0), (0.5, 0.0, 0.5), (0.5, 0.75, 0.5), (0.7, 0.0, 0.5), (0.7, 0.75, 0.5),
]


def main():
    torch.set_num_threads(2)
    rows = []
    for scale, score, iou in VARIANTS:
        finder_module.MIN_NUCLEUS_SCORE, finder_module.MAX_DUPLICATE_IOU = score, iou
        row = {"scale": scale, "min_nucleus_score": score, "max_duplicate_iou": iou}
        for name in ("fields-herlev-dev", "fields-isbi-dev"):
            r = evaluate_set(name, "self-trained", None, "screening", finder=FixedScale("default", scale))
            row[name] = {k: r.get(k) for k in ("nucleus_precision", "nucleus_recall", "nucleus_f1", "cell_dice",
                                               "cells_covered_dice_0.7", "cell_accuracy", "abnormal_caught",
                                               "abnormal_caught_or_reviewed", "seconds_per_cell")}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path(__file__).resolve().parents[1] / "results" / "dev" / "finder_postprocess"
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))

    def f(v):
        return "–" if v is None else f"{v:.3f}"

    lines = ["# Learned finder: post-processing and scale on the development fields (tuned on them)", "",
             "`python benchmarks/dev/finder_postprocess.py` (screening operating point)", "",
             ("| scale | min nucleus score | max duplicate IoU | Herlev F1 (P / R) | Herlev cell Dice | Herlev covered |"
              " Herlev abnormal caught | Herlev accuracy | ISBI F1 (P / R) | ISBI cell Dice | ISBI covered |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h, i = r["fields-herlev-dev"], r["fields-isbi-dev"]
        lines.append(f"| {r['scale']} | {r['min_nucleus_score']} | {r['max_duplicate_iou']} | {f(h['nucleus_f1'])}"
                     f" ({f(h['nucleus_precision'])} / {f(h['nucleus_recall'])}) | {f(h['cell_dice'])}"
                     f" | {f(h['cells_covered_dice_0.7'])} | {f(h['abnormal_caught'])} | {f(h['cell_accuracy'])}"
                     f" | {f(i['nucleus_f1'])} ({f(i['nucleus_precision'])} / {f(i['nucleus_recall'])})"
                     f" | {f(i['cell_dice'])} | {f(i['cells_covered_dice_0.7'])} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
