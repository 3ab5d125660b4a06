#!/bin/bash
# Device run 18 (issue 16/19): L2 prefetch of the step's next weights (--l2-prefetch-mb).
# Build; all GPU tests; a sweep of --l2-prefetch-mb at batch 1 (fused GEMVs), at batch 2-8
# (tensor-core GEMV and cuBLAS), and at batch 16/64 (cuBLAS GEMMs, 128 and 4k keys).
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m3 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15
[ -f $M/config.json ] || $B/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --tokenizer .cache/tokenizer/tokenizer.json | tail -1
fail=0
for t in gpu_kernels_test gpu_model_test gpu_engine_test; do
  timeout 120 /tmp/b/tests/$t > $OUT/$t.log 2>&1 || fail=1
  grep -E "^\[ *(FAILED|PASSED|SKIPPED) |Failure" $OUT/$t.log | head -8
done
[ $fail = 0 ] || { grep -B3 -A8 Failure $OUT/gpu_*_test.log | head -40; }
bench() {  # label, then gpu_model_bench flags
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 560 ] || { echo "skipped $label (time)"; return; }
  timeout 60 $B/gpu_model_bench --model $M --label $label --prompt-lens 16 --reps 1 "$@" 2>&1 | grep -E "^RESULT.*(decode|copy_bandwidth)|rror" | tee -a $OUT/bench.log
}
echo "== batch 1, 128 keys: --l2-prefetch-mb sweep, two passes $(date +%T)"
for pass in 1 2; do
  for mb in 0 8 16 24 32 40 48; do bench b1-l2-$mb --batch-sizes 1 --contexts 128 --l2-prefetch-mb $mb; done
done
echo "== batch 1-8 fused GEMVs (--gemv-max-rows 8) and cuBLAS, 0 / 32 MiB $(date +%T)"
for mb in 0 32; do
  bench tc8-l2-$mb --batch-sizes 1,2,4,8 --contexts 128 --gemv-max-rows 8 --l2-prefetch-mb $mb
  bench cublas-l2-$mb --batch-sizes 2,4,8 --contexts 128 --l2-prefetch-mb $mb
done
echo "== batch 16/64, 128 and 4k keys (cuBLAS GEMMs), 0 / 16 / 32 MiB $(date +%T)"
for mb in 0 16 32 0 32; do bench big-l2-$mb --batch-sizes 16,64 --contexts 128,4096 --decode-steps 32 --l2-prefetch-mb $mb; done
echo "== batch 1 at 4k and 16k keys $(date +%T)"
for mb in 0 32; do bench long1-l2-$mb --batch-sizes 1 --contexts 4096,16384 --l2-prefetch-mb $mb; done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
