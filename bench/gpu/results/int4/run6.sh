#!/bin/bash
# Device run 6 (2026-12-03): run 5 found the one-row GEMV 4-5% slower than on 5e72eb2 (bf16
# 1.88-1.92 ms a step against 1.78-1.84; FP8 1.495 against 1.451). The 16-bit and FP8 weight
# addresses are computed from k again, as before int4 (one multiply fewer per load issue); this
# run builds the two trees side by side again, runs the GEMV kernel tests, and alternates bf16
# and FP8 decode at batch 1 (and FP8 at 4), then int4 at batch 1.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
mkdir -p /tmp/old && tar -xzf .device/old.tar.gz -C /tmp/old
( cmake -S /tmp/old -B /tmp/bo -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake-old.log 2>&1 &&
  cmake --build /tmp/bo --target gpu_model_bench -j8 >$OUT/build-old.log 2>&1 || echo "old build failed" ) &
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test -j8 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
wait
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
R1_BIN_DIR=$B timeout 60 /tmp/b/tests/gpu_kernels_test --gtest_filter='*Gemv*' > $OUT/gpu_kernels_test.log 2>&1
echo "gpu_kernels_test: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_kernels_test.log | tr '\n' ' ')"
grep -E "Failure" -A4 $OUT/gpu_kernels_test.log | head -12
run() { local bin=$1; shift; timeout 45 $bin --model $M --random-weights --reps 1 --decode-steps 64 --contexts 128 --prompt-lens 128 "$@" 2>&1 | grep -E "^RESULT.*decode|rror" | tee -a $OUT/bench.log; }
for pass in 1 2; do
  run /tmp/bo/bin/gpu_model_bench --label old-bf16 --quantization none --batch-sizes 1
  run $B/gpu_model_bench --label new-bf16 --quantization none --batch-sizes 1
done
run /tmp/bo/bin/gpu_model_bench --label old-fp8 --quantization fp8 --batch-sizes 1,4
run $B/gpu_model_bench --label new-fp8 --quantization fp8 --batch-sizes 1,4

echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
