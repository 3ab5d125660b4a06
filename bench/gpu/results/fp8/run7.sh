#!/bin/bash
# Device run 7 (2026-12-02): the session's final tree (the CPU prefill kernel, the FP8 bias in
# _scaled_mm's epilogue, the kernels.cu review): build and every GPU test suite, then FP8 and
# bf16 decode once at batch 1-256 on the default flags.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
for t in gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test; do
  R1_BIN_DIR=/tmp/b/bin timeout 150 /tmp/b/tests/$t > $OUT/$t.log 2>&1
  echo "$t: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/$t.log | tr '\n' ' ')"
  grep -E "Failure" -A4 $OUT/$t.log | head -12
done
for q in none fp8; do
  timeout 100 $B/gpu_model_bench --model $M --random-weights --label $q --quantization $q --reps 1 --decode-steps 64 --batch-sizes 1,8,64,256 --contexts 128 --prompt-lens 128 2>&1 | grep -E "^RESULT.*(decode|ttft)|rror" | tee -a $OUT/bench.log
done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
