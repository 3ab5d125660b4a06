#!/bin/bash
# Long context (issue 19), device run 11 (2026-12-02): the tree at HEAD plus an experimental
# variant of the tensor-core decode attention kernel (R1_ATTN_LDMATRIX=1: K fragments by
# ldmatrix.x4, two mma chains per 8 keys). Build, every GPU test suite (the default kernel),
# the kernel tests again with the variant, then the decode grid with and without it, alternating.
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
R1_ATTN_LDMATRIX=1 R1_BIN_DIR=/tmp/b/bin timeout 100 /tmp/b/tests/gpu_kernels_test --gtest_filter='*ttention*' > $OUT/gpu_kernels_test-ldmatrix.log 2>&1
echo "gpu_kernels_test attention, ldmatrix variant: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_kernels_test-ldmatrix.log | tr '\n' ' ')"
grep -E "Failure" -A4 $OUT/gpu_kernels_test-ldmatrix.log | head -12
bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 540 ] || { echo "skipped $label (time)"; return; }
  timeout 120 $B/gpu_model_bench --model $M --random-weights --label $label --prompt-lens 128 --reps 1 --decode-steps 32 "$@" 2>&1 | grep -E "^RESULT.*decode|rror" | tee -a $OUT/bench.log
}
for pass in 1 2; do
  for v in 0 1; do R1_ATTN_LDMATRIX=$v bench ldm$v-p$pass --batch-sizes 1,16,64 --contexts 4096,16384; done
done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
