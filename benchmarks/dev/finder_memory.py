"""Peak memory of the field route on one slide tile, learned against classic finder (issue 22).

Each measurement runs in a fresh process (peak RSS is a high-water mark): segment_field on a
3072 x 3072 px region of the bench slide (a 2304 px tile with its 384 px margin, as `cervseg slide`
reads it), one torch thread, per-cell segment; the finder alone on the same region; the learned
finder's network on one 768 x 768 working tile.

    python benchmarks/dev/finder_memory.py   (after benchmarks/bench_slide.py --size 10000 made the slide)
    -> benchmarks/results/dev/finder_memory.md
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, in_fresh_process, write_dev_result  # noqa: E402
from bench_slide import slide_path  # noqa: E402

SLIDE = slide_path(10000)

CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from napari_cervseg.io.slides import open_slide
from napari_cervseg import segment_field
from napari_cervseg.segment.finder import load_finder
from napari_cervseg.workflows.fields import find_cells
what, finder = sys.argv[1], sys.argv[2]
with open_slide(sys.argv[3]) as s:
    region = s.read(3000, 3000, 6072, 6072)
net = load_finder("default") if finder == "learned" else "classic"
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss()
if what == "field":
    n = segment_field(region, finder=finder, operating_point="screening").n_cells
elif what == "finder":
    n = len(find_cells(region, net))
else:
    with torch.no_grad():
        net.net(torch.zeros(1, 3, 768, 768))
    n = 0
print(json.dumps({"what": what, "finder": finder, "cells": n, "base_mb": round(base), "peak_mb": round(rss())}))
"""


def main() -> None:
    if not SLIDE.exists():
        sys.exit(f"{SLIDE} is missing: run `python benchmarks/bench_slide.py --size 10000` first")
    rows = []
    for what, finder in (("field", "classic"), ("field", "learned"), ("finder", "classic"), ("finder", "learned"),
                         ("network", "learned")):
        rows.append(json.loads(in_fresh_process(CHILD, what, finder, str(SLIDE))))
        print(rows[-1])
    lines = ["# Peak memory on one slide tile, learned against classic finder (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/finder_memory.py`", "",
             "One fresh process each, one torch thread; a 3072 x 3072 px region of the 10,000^2 bench slide.", "",
             "| what | finder | cells | RSS before (MB) | peak RSS (MB) | peak - before |", "|---|---|---|---|---|---|"]
    names = {"field": "segment_field (per-cell segment)", "finder": "finding the cells only",
             "network": "the network on one 768 px working tile"}
    for r in rows:
        lines.append(f"| {names[r['what']]} | {r['finder']} | {r['cells']} | {r['base_mb']} | {r['peak_mb']}"
                     f" | {r['peak_mb'] - r['base_mb']} |")
    print("\n".join(lines))
    write_dev_result("finder_memory", lines)


if __name__ == "__main__":
    main()
