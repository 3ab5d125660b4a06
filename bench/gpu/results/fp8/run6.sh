#!/bin/bash
# FP8 weights (issue 18), device run 6 (2026-12-02): the FP8 GEMMs' inputs quantized by the
# kernels that make them (AddRmsNorm, SiluMulFp8) and the qkv bias in _scaled_mm's epilogue.
# Build, the GPU suites, then bf16 and FP8 decode of the random 1.5B at batch 2-256, alternating
# (run3's command; its FP8/bf16 ratios were 1.13, 1.03, 0.76, 0.78, 0.86 at batch 2, 4, 8, 64, 256).
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
grep -hE "fp8 weights|top-1|KL" $OUT/gpu_model_test.log | head -8
bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 540 ] || { echo "skipped $label (time)"; return; }
  timeout 100 $B/gpu_model_bench --model $M --random-weights --label $label --reps 1 --decode-steps 64 "$@" 2>&1 | grep -E "^RESULT.*(decode|ttft)|rror" | tee -a $OUT/bench.log
}
for pass in 1 2; do
  for q in none fp8; do bench $q-p$pass --quantization $q --batch-sizes 2,4,8,64,256 --contexts 128 --prompt-lens 128,2048; done
done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
