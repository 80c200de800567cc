#!/bin/bash
# Session 18 (issue 22, finder_rule.md "Finder v5"): waits for finder v5's training
#   cervseg train-finder --data ../shared/data/herlev --out runs/finder_v5.safetensors --fields 1200 --minutes 52 --keep-cells-running-out
# then self-trains it on the real unlabelled fields and scores it as the rule says.
cd /work/main
while pgrep -f "train-finder --data" >/dev/null; do sleep 20; done
[ -f runs/finder_v5.json ] || { echo "training ended without writing"; exit 1; }
date -u; echo adapt
.venv/bin/python benchmarks/dev/adapt_finder_real.py --finder runs/finder_v5.safetensors --out runs/finder_v5_real.safetensors > runs/adapt_v5.log 2>&1 || exit 1
B=".venv/bin/python benchmarks/bench_fields.py --operating-point screening"
V5=runs/finder_v5_real.safetensors
date -u; echo dev
$B --finder $V5 --big 10000 --out benchmarks/results/dev/fields_dev_finder_v5 > runs/b_dev_v5.log 2>&1
date -u; echo fresh5
F5="data/fields-herlev-test28 data/fields-herlev-test29 data/fields-herlev-test-large30 data/fields-herlev-val31 data/fields-herlev-val-large32"
$B --finder $V5 --sets $F5 --out benchmarks/results/dev/fields_fresh5_finder_v5 > runs/b_f5_v5.log 2>&1
$B --finder learned --sets $F5 --out benchmarks/results/dev/fields_fresh5_finder_bundled > runs/b_f5_b.log 2>&1
# (stopped here in session 18: condition 1 of the rule had failed on the development fields, and the
# CPU went to a control run of the bundled recipe; the two commands below were not run to the end)
date -u; echo test7
$B --finder $V5 --sets data/fields-herlev-test21 data/fields-herlev-test22 data/fields-herlev-test-large23 data/fields-herlev-test24 data/fields-herlev-test25 data/fields-herlev-test26 data/fields-herlev-test-large27 --out benchmarks/results/dev/fields_test7_finder_v5 > runs/b_t7_v5.log 2>&1
date -u; echo val5
$B --finder $V5 --sets data/fields-herlev-val data/fields-herlev-val2 data/fields-herlev-val3 data/fields-herlev-val-large data/fields-herlev-val-large2 fields-isbi-dev --out benchmarks/results/dev/fields_val12345_isbi_finder_v5 > runs/b_v5_v5.log 2>&1
date -u; echo done
