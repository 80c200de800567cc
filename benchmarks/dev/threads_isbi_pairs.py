"""Per matched cell, what the threads cut (MISSED_THREAD_WIDTH 0 against 5) does to the whole-cell
Dice on the ISBI development fields (issue 22): which cells gain, and which lose their nucleus
match. The masks are read for this count only; it chose nothing.

    python benchmarks/dev/threads_isbi_pairs.py -> benchmarks/results/dev/threads_isbi_pairs.md
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import dice, extent_mask, field_set, match_nuclei  # noqa: E402


def main() -> None:
    import napari_cervseg.segment.finder as finder_module
    from napari_cervseg import segment_field

    per_cell: dict = {}
    for width in (0, 5):
        finder_module.MISSED_THREAD_WIDTH = width
        for path, rgb, pages in field_set("fields-isbi-dev"):
            result = segment_field(rgb, operating_point="screening")
            for i, k in match_nuclei(result.nuclei, pages):
                per_cell.setdefault((path.stem, i), {})[width] = dice(extent_mask(result, k, rgb.shape[:2]), pages[i] > 0)
    lines = ["# The threads cut, cell by cell, on the ISBI development fields (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/threads_isbi_pairs.py`", "",
             "Matched cells (nucleus IoU >= 0.5) whose whole-cell Dice differs; '-' = not matched.", "",
             "| field | true cell | Dice, width 0 | width 5 |", "|---|---|---|---|"]
    for (field, i), d in sorted(per_cell.items()):
        if d.get(0) != d.get(5):
            lines.append(f"| {field} | {i} | " + " | ".join(f"{d[w]:.3f}" if w in d else "-" for w in (0, 5)) + " |")
    for width in (0, 5):
        values = [d[width] for d in per_cell.values() if width in d]
        lines.append(f"\nWidth {width}: {len(values)} matched cells, mean whole-cell Dice {sum(values) / len(values):.4f}.")
    print("\n".join(lines))
    write_dev_result("threads_isbi_pairs", lines)


if __name__ == "__main__":
    main()
