#!/bin/bash
# Device run 4 for the sort-free top-p kernel, 2026-12-01: below 4 top-p rows the device
# sampler sorts with the kernel's integer sums (the same token either way). Build;
# gpu_sampling_test and gpu_engine_test (TopPRowsGiveTheSameTokensAloneAndInABatch: a row alone
# takes the sort, in a batch of 8 the kernel); the decode step at batch 1, 2 and 4 (the new
# path, the float32 sort before it, greedy).
# From the repository root, .device and .cache/tokenizer carried:  OUT=... bash $0
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source .device/setup.sh .device/debs >/dev/null
B=/tmp/b
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >"$OUT/cmake.log" 2>&1 \
  || { tail -30 "$OUT/cmake.log"; exit 1; }
t=$(date +%s)
cmake --build $B --target gpu_sampling_test gpu_engine_test constrained_step_bench r1-mkmodel \
  -j"$(nproc)" >"$OUT/build.log" 2>&1 || { grep -B2 -A12 -m3 "error" "$OUT/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
M=/tmp/m15
$B/bin/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --force --tokenizer .cache/tokenizer/tokenizer.json >/dev/null 2>&1 &
mk=$!
timeout 120 $B/tests/gpu_sampling_test >"$OUT/gpu_sampling_test.log" 2>&1; echo "gpu_sampling_test rc=$?"
timeout 120 $B/tests/gpu_engine_test >"$OUT/gpu_engine_test.log" 2>&1; echo "gpu_engine_test rc=$?"
grep -hE "^\[  (FAILED|  PASSED) |Failure" "$OUT"/gpu_*_test.log | head -20
wait $mk
for b in 1 2 4; do
  timeout 100 $B/bin/constrained_step_bench --model $M --device cuda --batch $b --steps 64 --reps 3 \
    --shares 0 --temperatures 0,0.6 --top-p-sort both --overlap on 2>&1 | grep -v "^RESULT" | tee -a "$OUT/steps.txt"
done
