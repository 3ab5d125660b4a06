#!/bin/bash
# Device run 1 for the sort-free top-p kernel (worker/model/cuda/sampling.cu), 2026-12-01:
# build; the kernel's tests against the sorted reference (gpu_sampling_test) and the engine's
# GPU tests; sampler_bench on CUDA (kernel and sort side by side); the batch-64 decode step of
# the random-weight 1.5B at temperature 0.6 / top_p 0.95 with the kernel and with the sort,
# greedy beside them (constrained_step_bench --shares 0 --top-p-sort both).
# From the repository root, .device and .cache/tokenizer carried:  OUT=... bash $0
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source .device/setup.sh .device/debs >/dev/null
B=/tmp/b
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >"$OUT/cmake.log" 2>&1 \
  || { tail -30 "$OUT/cmake.log"; exit 1; }
t=$(date +%s)
cmake --build $B --target gpu_sampling_test gpu_engine_test sampler_bench constrained_step_bench r1-mkmodel -j"$(nproc)" >"$OUT/build.log" 2>&1 \
  || { grep -B2 -A12 -m3 "error" "$OUT/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
timeout 300 $B/tests/gpu_sampling_test >"$OUT/gpu_sampling_test.log" 2>&1; echo "gpu_sampling_test rc=$?"
grep -E "^\[  (     OK|FAILED|  PASSED) |Failure" "$OUT/gpu_sampling_test.log" | head -30
timeout 180 compute-sanitizer --tool racecheck $B/tests/gpu_sampling_test --gtest_filter='*ARowsToken*' >"$OUT/racecheck.log" 2>&1; echo "racecheck rc=$?"; tail -3 "$OUT/racecheck.log"
timeout 180 compute-sanitizer --tool memcheck $B/tests/gpu_sampling_test --gtest_filter='*NonFinite*' >"$OUT/memcheck.log" 2>&1; echo "memcheck rc=$?"; tail -3 "$OUT/memcheck.log"
timeout 300 $B/tests/gpu_engine_test >"$OUT/gpu_engine_test.log" 2>&1; echo "gpu_engine_test rc=$?"
grep -E "^\[  (     OK|FAILED|  PASSED) |Failure" "$OUT/gpu_engine_test.log" | head -20
timeout 240 $B/bin/sampler_bench --device cuda --cpu=false --scales 1,3,8 --batches 1,16,64,256 2>&1 | tee "$OUT/sampler_bench.log"
M=/tmp/m15
$B/bin/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --force --tokenizer .cache/tokenizer/tokenizer.json 2>&1 | tail -1
timeout 300 $B/bin/constrained_step_bench --model $M --device cuda --batch 64 --steps 64 --reps 3 \
  --shares 0 --temperatures 0,0.6 --top-p-sort both --overlap on 2>&1 | tee "$OUT/step_b64.log"
timeout 200 $B/bin/constrained_step_bench --model $M --device cuda --batch 1 --steps 64 --reps 3 \
  --shares 0 --temperatures 0,0.6 --top-p-sort both --overlap on 2>&1 | tee "$OUT/step_b1.log"
