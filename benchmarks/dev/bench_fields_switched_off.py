"""`benchmarks/bench_fields.py` with one module switch of the field route set to False: the
baseline of a rule in benchmarks/results/finder_rule.md. The first argument names the switch,
the rest go to bench_fields.py:

    python benchmarks/dev/bench_fields_switched_off.py napari_cervseg.workflows.fields.TAKE_NUCLEUS_HOLDING_SEED
        --sets data/fields-herlev-val data/fields-herlev-val2 fields-isbi-dev --finder learned
        --operating-point screening --out benchmarks/results/dev/fields_val12_isbi_base
"""

import importlib
import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench_fields.py"

if __name__ == "__main__":
    module_name, _, switch = sys.argv[1].rpartition(".")
    module = importlib.import_module(module_name)
    if not isinstance(getattr(module, switch, None), bool):
        sys.exit(f"{sys.argv[1]} is not a True/False switch of {module_name}")
    setattr(module, switch, False)
    sys.argv = [str(BENCH)] + sys.argv[2:]
    runpy.run_path(str(BENCH), run_name="__main__")
