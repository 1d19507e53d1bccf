#!/usr/bin/env bash
# Every GPU figure of docs/speed.md in one go (about 10 minutes on one H100/H200): the
# AttnGAN step at the bird and COCO shapes, the DAMSM step at the bird shapes, sampling and
# the evaluation path, each setting beside the reference. Tables and JSON go to $OUT (or
# ./benchmark-gpu). Usage: bash scripts/benchmark_gpu.sh [python], with a python that has the
# project's dependencies (nltk, easydict, torch-fidelity... besides torch).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
OUT=${OUT:-benchmark-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
ALL=reference,no_sync,image_cache,fused_adam,channels_last,compile,defaults,bf16,encoder_bf16,tf32
run() {  # name, then benchmark.py arguments
    local name=$1
    shift
    timeout 900 "$PY" scripts/benchmark.py --gpu 0 --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
    echo "== $name: exit $?" >> "$OUT/summary.md"
    sed -n '/^| setting/,$p' "$OUT/$name.log" >> "$OUT/summary.md"
}
run gan_bird --workload gan --cfg cfg/bird_attn2.yml --steps 100 --warmup 20 --settings "$ALL" --set WORKERS=8
run damsm_bird --workload damsm --cfg cfg/DAMSM/bird.yml --steps 60 --warmup 10 \
    --settings reference,no_sync,image_cache,fused_adam,channels_last,compile,defaults,tf32 --set WORKERS=8
run gan_coco --workload gan --cfg cfg/coco_attn2.yml --steps 100 --warmup 20 --settings reference,defaults,compile,bf16 \
    --set WORKERS=8
run sample_bird --workload sample --cfg cfg/bird_attn2.yml --steps 30 --batch_size 250 \
    --settings reference,channels_last,compile,bf16,tf32
run eval_bird --workload eval --cfg cfg/bird_attn2.yml --steps 20 --batch_size 250 --settings reference,channels_last
cat "$OUT/summary.md"
