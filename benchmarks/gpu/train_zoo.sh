#!/usr/bin/env bash
# Train the paper's classifiers and candidates for the bundled default side by side on one GPU.
#
#   DATA=path/to/herlev OUT=dir bash benchmarks/gpu/train_zoo.sh
#
# Every run is the plain `cervseg train` command (printed in its log), with a time limit
# (--max-minutes) so that each one ends with its best validation epoch saved and tested, whatever
# the machine. Cards (metrics, split, history) and logs go to $OUT/zoo.tar.gz; the compact models'
# weights (small) to $OUT/compact-*.safetensors; the VGG16 / Xception weights (86-635 MB) stay on the
# machine. GPU inference times of the untrained architectures go to $OUT/models_gpu.{json,md}.
# Candidates for the default are chosen on the validation split only (benchmarks/summarise_zoo.py).
set -u
DATA=${DATA:-runs/devdata/herlev}
OUT=${OUT:-runs/zoo-out}
WORK=${WORK:-/dev/shm/zoo}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-6.5}
SMOKE=${SMOKE:-0}  # 1: two epochs each, to check the script on a CPU
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
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

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$WORK/gpu.txt" 2>&1 || true
# the paper's architectures with the paper's recipe (SGD step / Adam batch 16, 8 augmentation sets)
run vgg16-paper --arch vgg16-adapted128 --recipe paper
run vgg16s-paper --arch vgg16-adapted128-simplified --recipe paper
run xception256-paper --arch xception-256 --recipe paper
# VGG16-Adapted128 from scratch with this project's recipe (AdamW one-cycle, online augmentation)
run vgg16-ours --arch vgg16-adapted128 --lr 1e-4 --epochs 100 --patience 100
# candidates for the bundled default (the current one: widths 24-192, 96 px, no equalisation, 60 epochs)
run compact-a --arch-kwargs '{"widths": [24, 48, 96, 192]}' --input-size 96 --equalise none --lr 1e-3 \
  --label-smoothing 0.05 --epochs 240 --patience 240
run compact-b --arch-kwargs '{"widths": [32, 64, 128, 256]}' --input-size 128 --equalise none --lr 1e-3 \
  --label-smoothing 0.05 --epochs 240 --patience 240
run compact-c --arch-kwargs '{"widths": [48, 96, 192, 384]}' --input-size 128 --equalise none --lr 1e-3 \
  --label-smoothing 0.05 --epochs 240 --patience 240
run compact-d --arch-kwargs '{"widths": [32, 64, 128, 256]}' --input-size 128 --equalise luminance --lr 1e-3 \
  --label-smoothing 0.05 --epochs 240 --patience 240
run compact-e --arch-kwargs '{"widths": [64, 128, 256, 512]}' --input-size 128 --equalise none --lr 1e-3 \
  --label-smoothing 0.05 --epochs 200 --patience 200
wait

if [ "$DEVICE" != cpu ] && [ "$SMOKE" != 1 ]; then
  "$PY" benchmarks/bench_models.py --device "$DEVICE" --out "$WORK/models_gpu.json" >"$WORK/bench_gpu.log" 2>&1
fi
(cd "$WORK" && tar czf "$OUT/zoo.tar.gz" ./*.json ./*.md ./*.log ./*.txt 2>/dev/null)
# the device returns at most 8 files of 16 MiB: one per compact model, the largest in two parts
# (cat compact-e.safetensors.part* > compact-e.safetensors)
for f in "$WORK"/compact-*.safetensors; do
  if [ "$(stat -c %s "$f")" -gt 15000000 ]; then
    split -b 15000000 -d "$f" "$OUT/$(basename "$f").part"
  else
    cp "$f" "$OUT/"
  fi
done
ls -la "$WORK" "$OUT"
grep -h '"accuracy"\|abnormal_recall\|^exit\|stopped' "$WORK"/*.log | head -40
