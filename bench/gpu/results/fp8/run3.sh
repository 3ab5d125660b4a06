#!/bin/bash
# FP8 weights (issue 18 item 4), device run 3: build, the GPU test suites, then decode of the
# random-weight 1.5B (and the 7B and 32B shapes at batch 1) with bf16 and FP8 weights in one lease.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
for t in gpu_kernels_test gpu_model_test gpu_engine_test; do
  R1_BIN_DIR=/tmp/b/bin timeout 150 /tmp/b/tests/$t > $OUT/$t.log 2>&1
  echo "$t: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/$t.log | tr '\n' ' ')"
  grep -E "Failure" -A4 $OUT/$t.log | head -12
done
grep -hE "fp8 weights|fp8 gemv K 1536 M 8" $OUT/gpu_model_test.log $OUT/gpu_kernels_test.log
bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 530 ] || { echo "skipped $label (time)"; return; }
  timeout 100 $B/gpu_model_bench --model $M --random-weights --label $label --prompt-lens 128 --reps 1 --decode-steps 64 "$@" 2>&1 | grep -E "^RESULT.*(decode|bound)|rror" | tee -a $OUT/bench.log
}
for pass in 1 2; do
  for q in none fp8; do bench $q-b1-p$pass --quantization $q --batch-sizes 1 --contexts 128,4096; done
done
bench fp8-bf16head-b1 --quantization fp8 --fp8-lm-head=false --batch-sizes 1 --contexts 128
bench none-b2-256 --quantization none --batch-sizes 2,4,8,64,256 --contexts 128
bench fp8-b2-256 --quantization fp8 --batch-sizes 2,4,8,64,256 --contexts 128 --gemv-max-rows 4
M7=/tmp/m7c; $B/r1-mkmodel --preset r1-distill-qwen-7b --config-only --out $M7 >/dev/null
for q in none fp8; do M=$M7 bench 7b-$q --quantization $q --batch-sizes 1 --contexts 128; done
M32=/tmp/m32c; $B/r1-mkmodel --preset r1-distill-qwen-32b --config-only --out $M32 >/dev/null
for q in none fp8; do M=$M32 bench 32b-$q --quantization $q --batch-sizes 1 --contexts 128; done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
