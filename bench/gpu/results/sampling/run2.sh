#!/bin/bash
# Device run 2 for the sort-free top-p kernel, 2026-12-01: the kernel after run 1 (loads four
# tiles ahead, the bisection starts from the row's value range, the first of tied tokens in one
# pass). Build; gpu_sampling_test and gpu_engine_test; sampler_bench (kernel and sort side by
# side); the batch-1 and batch-64 decode steps (kernel, sort, greedy); then the R1-shaped
# serving level of 64 streams, greedy and at temperature 0.6 (top_p 0.95 from the checkpoint).
# From the repository root, .device and .cache/tokenizer carried:  OUT=... bash $0
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source .device/setup.sh .device/debs >/dev/null
B=/tmp/b
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >"$OUT/cmake.log" 2>&1 \
  || { tail -30 "$OUT/cmake.log"; exit 1; }
t=$(date +%s)
cmake --build $B --target gpu_sampling_test gpu_engine_test sampler_bench constrained_step_bench r1-mkmodel \
  r1-worker r1-gateway r1-loadtest -j"$(nproc)" >"$OUT/build.log" 2>&1 \
  || { grep -B2 -A12 -m3 "error" "$OUT/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
M=/tmp/m15
$B/bin/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --force --tokenizer .cache/tokenizer/tokenizer.json >/dev/null 2>&1 &
mk=$!
timeout 120 $B/tests/gpu_sampling_test >"$OUT/gpu_sampling_test.log" 2>&1; echo "gpu_sampling_test rc=$?"
timeout 120 $B/tests/gpu_engine_test >"$OUT/gpu_engine_test.log" 2>&1; echo "gpu_engine_test rc=$?"
grep -hE "^\[  (FAILED|  PASSED) |Failure" "$OUT"/gpu_*_test.log | head -20
timeout 150 $B/bin/sampler_bench --device cuda --cpu=false --scales 1,8 --batches 1,16,64,256 2>&1 | grep -v greedy | tee "$OUT/sampler_bench.log"
wait $mk
for b in 1 64; do
  timeout 150 $B/bin/constrained_step_bench --model $M --device cuda --batch $b --steps 64 --reps 3 \
    --shares 0 --temperatures 0,0.6 --top-p-sort both --overlap on 2>&1 | grep -v "^RESULT" | tee "$OUT/step_b$b.txt"
done
for t in 0 0.6; do
  BUILD=$B MODEL=$M CONCURRENCY=64 DURATION=30 REQUEST_TIMEOUT=40 TEMPERATURE=$t bash bench/gpu/serve_r1.sh /tmp/serve 2>&1 | grep RESULT | tee -a "$OUT/serve.txt"
done
cp /tmp/serve/serve-64*.json "$OUT/"
