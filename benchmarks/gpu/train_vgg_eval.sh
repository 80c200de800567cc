#!/usr/bin/env bash
# VGG16-Adapted128 and XceptionNet-256 trained to the end of their schedules on one GPU (fewer runs
# side by side than train_zoo.sh), then Algorithm 1 / 2 with the better VGG16 (by validation
# balanced accuracy) evaluated on the test split: the paper's own classifier under the pipeline.
#
#   DATA=path/to/herlev OUT=dir bash benchmarks/gpu/train_vgg_eval.sh
#
# Needs zennit for LRP (carry its wheel where it is not installed). Cards, logs and the evaluation
# go to $OUT/vgg-train.tar.gz and $OUT/vgg-eval.tar.gz; the weights (86-260 MB) stay on the machine.
set -u
DATA=${DATA:-runs/devdata/herlev}
OUT=${OUT:-runs/vgg-out}
WORK=${WORK:-/dev/shm/vgg}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-4}
SMOKE=${SMOKE:-0}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
PY=${PY:-python3}

run() {  # name, then cervseg train arguments
  local name=$1; shift
  local extra=()
  if [ "$SMOKE" = 1 ]; then extra=(--epochs 2); fi
  {
    echo "+ cervseg train --data $DATA --out $name.safetensors --device $DEVICE --max-minutes $MINUTES $* ${extra[*]}"
    "$PY" -m napari_cervseg.cli train --data "$DATA" --out "$WORK/$name.safetensors" --device "$DEVICE" \
      --max-minutes "$MINUTES" "$@" "${extra[@]}"
    echo "exit $?"
  } >"$WORK/$name.log" 2>&1 &
}

run vgg16-lr1e-4 --arch vgg16-adapted128 --lr 1e-4 --epochs 100 --patience 100
run vgg16-lr3e-4 --arch vgg16-adapted128 --lr 3e-4 --epochs 100 --patience 100
run xception256-paper-full --arch xception-256 --recipe paper
wait
(cd "$WORK" && tar czf "$OUT/vgg-train.tar.gz" ./*.json ./*.log)  # back even if the evaluation is cut short

best=$("$PY" - "$WORK" <<'PY'
import json, pathlib, sys
cards = {p.stem: json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("vgg16-*.json")}
print(max(cards, key=lambda k: cards[k]["training"]["best_val_balanced_accuracy"]))
PY
)
echo "VGG16 chosen on validation: $best"
limit=()
if [ "$SMOKE" = 1 ]; then limit=(--limit 4); fi
{
  echo "+ cervseg evaluate --data $DATA --split test --model $best.safetensors --methods gradcam++ gradcam++-paper lrp-ruleset1 --n-xai 0 --workers 8 --device cpu"
  "$PY" -m napari_cervseg.cli evaluate --data "$DATA" --split test --model "$WORK/$best.safetensors" \
    --methods gradcam++ gradcam++-paper lrp-ruleset1 --n-xai 0 --workers 8 --device cpu \
    --out "$WORK/eval_vgg16_test.json" --quiet "${limit[@]}"
  echo "exit $?"
} >"$WORK/eval_vgg16.log" 2>&1
(cd "$WORK" && tar czf "$OUT/vgg-eval.tar.gz" eval_vgg16* 2>/dev/null)
ls -la "$WORK" "$OUT"
grep -h '"accuracy"\|abnormal_recall\|^exit' "$WORK"/*.log | head -20
cat "$WORK/eval_vgg16_test.md" 2>/dev/null | head -16
