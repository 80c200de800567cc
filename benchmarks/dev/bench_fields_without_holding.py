"""`benchmarks/bench_fields.py` with the crop's nucleus no longer taken when it merely holds the
finder's (TAKE_NUCLEUS_HOLDING_SEED = False): the baseline of its rule in
benchmarks/results/finder_rule.md. Same arguments:

    python benchmarks/dev/bench_fields_without_holding.py --sets data/fields-herlev-val data/fields-herlev-val2
        fields-isbi-dev --finder learned --operating-point screening --out benchmarks/results/dev/fields_val12_isbi_base
"""

import runpy
import sys
from pathlib import Path

from napari_cervseg.workflows import fields

BENCH = Path(__file__).resolve().parents[1] / "bench_fields.py"

if __name__ == "__main__":
    fields.TAKE_NUCLEUS_HOLDING_SEED = False
    sys.argv = [str(BENCH)] + sys.argv[1:]
    runpy.run_path(str(BENCH), run_name="__main__")
