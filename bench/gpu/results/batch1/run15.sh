#!/bin/bash
# Device run 15 (issue 16): the tensor-core GEMV with whole-sector loads and uneven K slices.
# Build; GEMV kernel tests; batch 1-8 decode against cuBLAS (2-8 rows, and 1 row); ncu of a
# batch-1 and a batch-8 step; the model parity tests.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m3 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15
[ -f $M/config.json ] || $B/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --tokenizer .cache/tokenizer/tokenizer.json | tail -1
timeout 200 /tmp/b/tests/gpu_kernels_test --gtest_filter='*Gemv*' 2>&1 | tee $OUT/gemv_test.log | grep -E "^\[ *(FAILED|PASSED|OK) |Failure|Expected|Which|store|silu|resid" | head -30
G="--batch-sizes 1,2,4,8 --contexts 128 --decode-steps 128 --prompt-lens 16 --reps 1"
for pass in 1 2; do
  timeout 100 $B/gpu_model_bench --model $M --label tc --gemv-max-rows 8 $G 2>&1 | grep -E "^RESULT.*(decode|bound)|rror"
  timeout 100 $B/gpu_model_bench --model $M --label cublas --gemv-max-rows 1 --batch-sizes 2,4,8 --contexts 128 --decode-steps 128 --prompt-lens 16 --reps 1 2>&1 | grep -E "^RESULT.*decode|rror"
  timeout 100 $B/gpu_model_bench --model $M --label cublas1 --gemv-max-rows 0 --batch-sizes 1 --contexts 128 --decode-steps 128 --prompt-lens 16 --reps 1 2>&1 | grep -E "^RESULT.*decode|rror"
done | tee $OUT/b1-8.log
for b in 1 8; do
  timeout 200 ncu --graph-profiling node --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv --page raw --log-file $OUT/ncu-b$b.csv $B/gpu_model_bench --model $M --gemv-max-rows 8 \
    --prompt-lens 16 --reps 1 --batch-sizes $b --contexts 128 --decode-steps 2 >/dev/null 2>&1
  python3 bench/gpu/ncu_summary.py $OUT/ncu-b$b.csv 9 2>&1 | tail -17
done
timeout 200 /tmp/b/tests/gpu_model_test 2>&1 | tee $OUT/gpu_model_test.log | grep -E "^\[ *(FAILED|PASSED) |Failure" | head
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
