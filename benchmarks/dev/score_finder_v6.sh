#!/bin/bash
# Session 19 (issue 22, finder_rule.md "Finder v6"): waits for finder v6's training
#   cervseg train-finder --data ../shared/data/herlev --out runs/finder_v6.safetensors --fields 1200 --minutes 52
# (the bundled recipe, run with the faster steps of 0aeabd9: --precision auto = bfloat16 here),
# then self-trains it on the real unlabelled fields and scores it as the rule says.
cd /work/main
while pgrep -f "train-finder --data" >/dev/null; do sleep 20; done
[ -f runs/finder_v6.json ] || { echo "training ended without writing"; exit 1; }
date -u; echo adapt
.venv/bin/python benchmarks/dev/adapt_finder_real.py --finder runs/finder_v6.safetensors --out runs/finder_v6_real.safetensors > runs/adapt_v6.log 2>&1 || exit 1
B=".venv/bin/python benchmarks/bench_fields.py --operating-point screening"
V6=runs/finder_v6_real.safetensors
date -u; echo dev
$B --finder $V6 --big 10000 --out benchmarks/results/dev/fields_dev_finder_v6 > runs/b_dev_v6.log 2>&1
date -u; echo fresh5b
F5="data/fields-herlev-test33 data/fields-herlev-test34 data/fields-herlev-test-large35 data/fields-herlev-val36 data/fields-herlev-val-large37"
$B --finder $V6 --sets $F5 --out benchmarks/results/dev/fields_fresh5b_finder_v6 > runs/b_f5_v6.log 2>&1
$B --finder learned --sets $F5 --out benchmarks/results/dev/fields_fresh5b_finder_bundled > runs/b_f5b_b.log 2>&1
date -u; echo test7
$B --finder $V6 --sets data/fields-herlev-test21 data/fields-herlev-test22 data/fields-herlev-test-large23 data/fields-herlev-test24 data/fields-herlev-test25 data/fields-herlev-test26 data/fields-herlev-test-large27 --out benchmarks/results/dev/fields_test7_finder_v6 > runs/b_t7_v6.log 2>&1
date -u; echo val5
$B --finder $V6 --sets data/fields-herlev-val data/fields-herlev-val2 data/fields-herlev-val3 data/fields-herlev-val-large data/fields-herlev-val-large2 fields-isbi-dev --out benchmarks/results/dev/fields_val12345_isbi_finder_v6 > runs/b_v5_v6.log 2>&1
date -u; echo done
