#!/bin/bash
# FP8 weights, device run 4: the committed tree (with --gemv-max-rows -1 resolving to 4 for FP8):
# build, every GPU test suite, and FP8 decode at batch 1-8 on the default flags.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
echo "tree: $(git rev-parse --short HEAD 2>/dev/null), $(git status --short 2>/dev/null | wc -l) changed paths" | tee -a $OUT/bench.log
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
timeout 100 $B/gpu_model_bench --model $M --random-weights --label fp8-default --quantization fp8 --prompt-lens 128 --reps 1 --decode-steps 64 --batch-sizes 1,2,4,8 --contexts 128 2>&1 | grep -E "^RESULT.*(load_s|decode)|rror" | tee -a $OUT/bench.log
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
