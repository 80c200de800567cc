"""Peak memory of a slide worker against the finder network's tile side on large images (issue 22).

A `cervseg slide` worker runs tile after tile in one process; its peak is the high-water mark of
the network's activations on top of what earlier tiles left in the heap. Each measurement is a
fresh process, one torch thread, running `run_tile` (the worker's task: per-cell segment, the
default model) on the same consecutive tiles of the 10,000^2 bench slide, with the network's tile
side for images larger than one 768 px working tile (`finder.NET_TILE_LARGE`) set to 768 (the
former behaviour) or 512. Reported: peak RSS, RSS before the first tile, seconds, cells found.

    python benchmarks/dev/finder_net_memory.py [--tiles 5:11] [--sides 768 512]
    (after benchmarks/bench_slide.py --size 10000 made the slide)
    -> benchmarks/results/dev/finder_net_memory.md
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, in_fresh_process, write_dev_result  # noqa: E402
from bench_slide import slide_path  # noqa: E402

SLIDE = slide_path(10000)

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from napari_cervseg.segment import finder
from napari_cervseg.workflows import slides
side, first, last, slide_path, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
finder.NET_TILE_LARGE = side
config = slides.SlideConfig(per_cell="segment").check()
with slides.open_slide(slide_path) as s:
    grid = slides.tile_grid(s.shape, config.tile)
slides._model(config.model)
finder.load_finder("default")
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base, t0, cells = rss(), time.perf_counter(), 0
for spec in grid[first:last]:
    cells += slides.run_tile(slide_path, spec, config, out)["n_cells"]
print(json.dumps({"side": side, "tiles": last - first, "cells": cells, "base_mb": round(base),
                  "peak_mb": round(rss()), "seconds": round(time.perf_counter() - t0, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", default="5:11", help="first:last tile of the slide's grid (row-major)")
    parser.add_argument("--sides", type=int, nargs="+", default=[768, 512])
    args = parser.parse_args()
    if not SLIDE.exists():
        sys.exit(f"{SLIDE} is missing: run `python benchmarks/bench_slide.py --size 10000` first")
    first, last = (int(v) for v in args.tiles.split(":"))
    rows = []
    for side in args.sides:
        with tempfile.TemporaryDirectory() as out:
            (Path(out) / "tiles").mkdir()
            rows.append(json.loads(in_fresh_process(CHILD, str(side), str(first), str(last), str(SLIDE), out)))
        print(rows[-1], flush=True)
    lines = ["# A slide worker's peak memory against the finder network's tile side (issue 22)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/finder_net_memory.py --tiles {args.tiles}"
             f" --sides {' '.join(map(str, args.sides))}`"), "",
             (f"One fresh process each, one torch thread; `run_tile` on tiles {first}..{last - 1} of the 10,000^2"
             " bench slide (2304 px tiles with their 384 px margin), per-cell segment."), "",
             "| network tile side (large images) | tiles | cells | RSS before (MB) | peak RSS (MB) | seconds |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['side']} | {r['tiles']} | {r['cells']} | {r['base_mb']} | {r['peak_mb']} | {r['seconds']} |"
              for r in rows]
    write_dev_result("finder_net_memory", lines)


if __name__ == "__main__":
    main()
