#!/bin/bash
# FP8 weights (issue 18 item 4), device run 2 (FP8 GEMV steps of 128 k): build, the GPU tests, then
# decode of the random-weight 1.5B with bf16 and with FP8 weights, interleaved in one lease.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
timeout 150 /tmp/b/tests/gpu_kernels_test  > $OUT/gpu_kernels_test.log 2>&1
grep -E "^\[ *(FAILED|PASSED|SKIPPED|  OK) |Failure|error" $OUT/gpu_kernels_test.log | head -20
grep "fp8 gemv" $OUT/gpu_kernels_test.log | head -4
R1_BIN_DIR=/tmp/b/bin timeout 200 /tmp/b/tests/gpu_model_test  > $OUT/gpu_model_test.log 2>&1
grep -E "^\[ *(FAILED|PASSED|SKIPPED|  OK) |Failure|drift|rror" $OUT/gpu_model_test.log | head -20
bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 520 ] || { echo "skipped $label (time)"; return; }
  timeout 90 $B/gpu_model_bench --model $M --random-weights --label $label --prompt-lens 128 --reps 1 --decode-steps 64 "$@" 2>&1 | grep -E "^RESULT.*(decode|bound|ttft)|rror" | tee -a $OUT/bench.log
}
for pass in 1 2; do
  for q in none fp8; do bench $q-b1-p$pass --quantization $q --batch-sizes 1 --contexts 128,4096; done
done
bench none-b248 --quantization none --batch-sizes 2,4,8 --contexts 128
bench fp8-b248-gemm --quantization fp8 --batch-sizes 2,4,8 --contexts 128
bench fp8-b248-gemv --quantization fp8 --batch-sizes 2,4,8 --contexts 128 --gemv-max-rows 8
M7=/tmp/m7c; $B/r1-mkmodel --preset r1-distill-qwen-7b --config-only --out $M7 >/dev/null
for q in none fp8; do M=$M7 bench 7b-$q --quantization $q --batch-sizes 1 --contexts 128; done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
