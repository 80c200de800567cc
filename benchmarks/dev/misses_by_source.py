"""Development check (issue 22, session 16): are the field route's missed abnormal cells a few
hard source cells drawn again and again? For each source cell of the composed sets: how often it
was drawn, how often it was an abnormal cell not caught (read from a `field_misses.py` result),
and how the default single-cell route draws its nucleus on its own Herlev image (nucleus IoU and
area over the true nucleus's). The masks are read for these counts only.

    python benchmarks/dev/misses_by_source.py --misses benchmarks/results/dev/field_misses_val123_s16.md \
        --sets data/fields-herlev-val data/fields-herlev-val2 data/fields-herlev-val3 --name misses_by_source_val123
    -> benchmarks/results/dev/misses_by_source_val123.md
"""

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

from napari_cervseg import segment_cell  # noqa: E402

HERLEV = ROOT.parent / "shared" / "data" / "herlev"


def single_image_nucleus(name: str, herlev_class: str) -> tuple[float, float] | None:
    """(IoU, area ratio) of the default route's nucleus on the cell's own Herlev image; None
    without a mask."""
    mask = cv2.imread(str(HERLEV / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    if mask is None:
        return None
    rgb = cv2.cvtColor(cv2.imread(str(HERLEV / "images" / herlev_class / f"{name}.png")), cv2.COLOR_BGR2RGB)
    drawn = segment_cell(rgb).labels == 2
    truth = mask == 2
    return float((drawn & truth).sum() / max(1, (drawn | truth).sum())), float(drawn.sum() / max(1, truth.sum()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--misses", required=True, help="a field_misses.py result (.md)")
    ap.add_argument("--sets", nargs="+", required=True, help="the composed sets it was made on (with cells.csv)")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()

    drawn, classes = Counter(), {}
    for folder in args.sets:
        with open(Path(folder) / "cells.csv") as table:
            for row in csv.DictReader(table):
                drawn[row["name"]] += 1
                classes[row["name"]] = (row["herlev_class"], row["label"])
    section = Path(args.misses).read_text().split("### 2.")[0]
    misses = Counter()
    for line in section.splitlines():
        m = re.match(r"\| \S+ field\d+ \| \d+ \| (\S+) \| (.*?) \|", line)
        if m:
            misses[m.group(1)] += 1
    abnormal = [n for n, (_, label) in classes.items() if label == "abnormal"]
    single = {n: single_image_nucleus(n, classes[n][0]) for n in sorted(abnormal)}
    hard = {n for n, s in single.items() if s is not None and s[0] < 0.5}
    total_misses = sum(misses.values())
    abnormal_drawn = sum(drawn[n] for n in abnormal)
    lines = [
        "# Missed abnormal cells by source cell (issue 22)", "",
        (f"## code {code_commit()}: `python benchmarks/dev/misses_by_source.py --misses {args.misses} --sets"
        f" {' '.join(args.sets)} --name {args.name}`"), "",
        ("Single image: the default `segment_cell` on the source cell's own Herlev image; IoU and area of its"
        " nucleus over the true nucleus's (masks read to score only)."), "",
        (f"- abnormal source cells: {len(abnormal)}, drawn {abnormal_drawn} times in the sets; abnormal cells not"
        f" caught: {total_misses}, from {len(misses)} source cells"),
        (f"- source cells whose own image's nucleus is drawn at IoU < 0.5: {len(hard)} of"
        f" {sum(s is not None for s in single.values())} with a mask; drawn {sum(drawn[n] for n in hard)} times;"
        f" {sum(misses[n] for n in hard)} of the {total_misses} misses"),
        (f"- the three most missed source cells: {sum(c for _, c in misses.most_common(3))} of the"
        f" {total_misses} misses"), "",
        "| source cell | Herlev class | drawn | not caught | single image: nucleus IoU | area ratio |",
        "|---|---|---|---|---|---|"]
    for name, count in misses.most_common():
        s = single.get(name)
        cls = classes.get(name, ("?", "?"))[0]
        lines.append(f"| {name} | {cls} | {drawn[name]} | {count} | "
                     + (f"{s[0]:.2f} | {s[1]:.2f} |" if s else "- | - |"))
    write_dev_result(args.name, lines)


if __name__ == "__main__":
    main()
