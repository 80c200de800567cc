#!/bin/bash
# Session 18 (issue 22, finder_rule.md "Outcome of finder v5"): once finder v5's scoring reached its
# test7 step, stop it and run the control, the bundled finder's own recipe on today's machine
# (diagnostic only, never bundled).
cd /work/main
while ! grep -q "^test7" runs/score_v5.log; do sleep 5; done
pkill -f score_finder_v5.sh; sleep 1; pkill -f "bench_fields.py.*fields_test7_finder_v5"
sleep 3
date -u > runs/control.start
nohup .venv/bin/cervseg train-finder --data ../shared/data/herlev --out runs/finder_v3r.safetensors --fields 1200 --minutes 52 > runs/finder_v3r.log 2>&1
.venv/bin/python benchmarks/dev/adapt_finder_real.py --finder runs/finder_v3r.safetensors --out runs/finder_v3r_real.safetensors > runs/adapt_v3r.log 2>&1
.venv/bin/python benchmarks/bench_fields.py --operating-point screening --finder runs/finder_v3r_real.safetensors --out benchmarks/results/dev/fields_dev_finder_v3r > runs/b_dev_v3r.log 2>&1
date -u > runs/control.end
