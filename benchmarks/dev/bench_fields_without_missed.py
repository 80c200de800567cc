"""`benchmarks/bench_fields.py` with the missed cytoplasm switched off (GIVE_MISSED_CYTOPLASM =
False): the baseline of its rule in benchmarks/results/finder_rule.md. Same arguments:

    python benchmarks/dev/bench_fields_without_missed.py --sets data/fields-herlev-val2 --finder learned
        --operating-point screening --out benchmarks/results/dev/fields_val2_base
"""

import runpy
import sys
from pathlib import Path

import napari_cervseg.segment.finder as finder

BENCH = Path(__file__).resolve().parents[1] / "bench_fields.py"

if __name__ == "__main__":
    finder.GIVE_MISSED_CYTOPLASM = False
    sys.argv = [str(BENCH)] + sys.argv[1:]
    runpy.run_path(str(BENCH), run_name="__main__")
