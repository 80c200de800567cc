"""Development check (issue 22, session 17): the finder network's time on a 1536 x 1152 field in
one pass against 512 px tiles, alternating in one process (rule 10's outcome, finder_rule.md).

    python benchmarks/dev/net_tile_time.py  -> benchmarks/results/dev/net_tile_time.md
"""

import sys
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402


def main() -> None:
    import napari_cervseg.segment.finder as finder_module

    finder = finder_module.load_finder("default")
    paths = sorted((ROOT / "data" / "fields-herlev-val-large" / "images").glob("*.png"))[:3]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    finder.maps(images[0], finder_module.FIRST_SCALE)  # warm up
    times = {768: [], 1152: []}
    for _ in range(3):
        for tile in times:
            finder_module.NET_TILE = tile
            start = time.perf_counter()
            for image in images:
                finder.maps(image, finder_module.FIRST_SCALE)
            times[tile].append((time.perf_counter() - start) / len(images))
    lines = ["# The finder network on a 1536 x 1152 field: one pass against 512 px tiles (issue 22, session 17)", "",
             f"## code {code_commit()}: `python benchmarks/dev/net_tile_time.py`", "",
             (f"`CellFinder.maps` at the working scale {finder_module.FIRST_SCALE} (1075 x 806 px) on three"
             f" val-large fields, {torch.get_num_threads()} torch threads, three alternating rounds;"
             " seconds per field."), "",
             "| NET_TILE | how the field goes | rounds (s / field) |", "|---|---|---|",
             f"| 768 | six 512 px tiles, 96 px overlap | {', '.join(f'{t:.2f}' for t in times[768])} |",
             f"| 1152 | one pass | {', '.join(f'{t:.2f}' for t in times[1152])} |"]
    write_dev_result("net_tile_time", lines)


if __name__ == "__main__":
    main()
