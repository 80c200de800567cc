"""Which fields does the white balance touch, and what does finding the slide's colour cost (issue
22)? For each field of each set: the slide colour, its brightness and the "into-range" gains (no
mask read, nothing segmented); and the median time of white_balance_gains over the set's fields.

    python benchmarks/dev/white_balance_gains.py -> benchmarks/results/dev/white_balance_gains.md
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set  # noqa: E402

SETS = ["fields-herlev-dev", "data/fields-herlev-val", "data/fields-herlev-val2", "data/fields-herlev-val3",
        "data/fields-herlev-val-large", "data/fields-herlev-val-large2", "data/fields-herlev-test21",
        "data/fields-herlev-test22", "data/fields-herlev-test-large23", "fields-isbi-dev"]


def main() -> None:
    from napari_cervseg.segment.cells import slide_colour
    from napari_cervseg.workflows.fields import white_balance_gains

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=SETS)
    args = parser.parse_args()
    lines = ["# The white balance's reach and cost per field (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/white_balance_gains.py`", "",
             "| set | fields | balanced (into-range) | darkest slide brightness | largest gain | ms per field (median) |",
             "|---|---|---|---|---|---|"]
    for name in args.sets:
        balanced, brightness, largest, seconds = 0, [], 1.0, []
        for _, rgb, _ in field_set(name):
            t0 = time.perf_counter()
            gains = white_balance_gains(rgb, "into-range")
            seconds.append(time.perf_counter() - t0)
            brightness.append(float(slide_colour(rgb).mean()))
            if gains is not None:
                balanced += 1
                largest = max(largest, float(np.max(gains)), float(1 / np.min(gains)))
        lines.append(f"| {name} | {len(seconds)} | {balanced} | {min(brightness):.0f} | {largest:.2f} |"
                     f" {1000 * np.median(seconds):.0f} |")
        print(lines[-1], flush=True)
    lines += ["", ("Largest gain: the largest factor by which a channel is raised or lowered (1.00: none)."
              " Grey sets (ISBI) are never balanced."), ""]
    write_dev_result("white_balance_gains", lines)


if __name__ == "__main__":
    main()
