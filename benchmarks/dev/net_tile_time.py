"""Development check (issue 22, session 17): the finder network's time on a field in one pass
against tiles, alternating in one process (rule 10's outcome, finder_rule.md): on three
1536 x 1152 val-large fields (one pass against the six 512 px tiles they go in), and on four
1024 x 768 development fields (the one pass they go in against 512, 384 and 256 px tiles).

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
from bench_fields import DATA  # noqa: E402

# how a field goes -> (NET_TILE, NET_TILE_LARGE): an image larger than NET_TILE a side goes in
# tiles of NET_TILE_LARGE
LARGE = {"six 512 px tiles, 96 px overlap (default)": (768, 512), "one pass (rule 10)": (1152, 512)}
DEVELOPMENT = {"one pass (default)": (768, 512), "512 px tiles": (256, 512), "384 px tiles": (256, 384),
               "256 px tiles": (200, 256)}


def _rounds(finder, finder_module, images, configs, rounds=3) -> dict:
    plain = (finder_module.NET_TILE, finder_module.NET_TILE_LARGE)
    finder.maps(images[0], finder_module.FIRST_SCALE)  # warm up
    times = {name: [] for name in configs}
    try:
        for _ in range(rounds):
            for name, (tile, large) in configs.items():
                finder_module.NET_TILE, finder_module.NET_TILE_LARGE = tile, large
                start = time.perf_counter()
                for image in images:
                    finder.maps(image, finder_module.FIRST_SCALE)
                times[name].append((time.perf_counter() - start) / len(images))
    finally:
        finder_module.NET_TILE, finder_module.NET_TILE_LARGE = plain
    return times


def _read(folder: Path, n: int) -> list:
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))[:n]]


def main() -> None:
    import napari_cervseg.segment.finder as finder_module

    finder = finder_module.load_finder("default")
    large = _rounds(finder, finder_module, _read(ROOT / "data" / "fields-herlev-val-large" / "images", 3), LARGE)
    development = _rounds(finder, finder_module, _read(DATA / "fields-herlev-dev" / "images", 4), DEVELOPMENT)
    lines = ["# The finder network on a field: one pass against tiles (issue 22, session 17)", "",
             f"## code {code_commit()}: `python benchmarks/dev/net_tile_time.py`", "",
             (f"`CellFinder.maps` at the working scale {finder_module.FIRST_SCALE}, {torch.get_num_threads()}"
              " torch threads, three alternating rounds; seconds per field."), "",
             "| fields | how a field goes | rounds (s / field) |", "|---|---|---|"]
    for label, times in (("3 val-large, 1536 x 1152 (1075 x 806 working px)", large),
                         ("4 development, 1024 x 768 (717 x 538 working px)", development)):
        lines += [f"| {label} | {name} | {', '.join(f'{t:.2f}' for t in ts)} |" for name, ts in times.items()]
    write_dev_result("net_tile_time", lines)


if __name__ == "__main__":
    main()
