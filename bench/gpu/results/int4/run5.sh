#!/bin/bash
# Device run 5 (2026-12-03): the int4 model test again with its 12-sequence check fixed (RunBatch
# gave sequences 5 apart the same KV blocks past 5 sequences), and an A/B of the GEMV changes:
# the parent tree of the int4 work (5e72eb2, carried as .device/old.tar.gz) and this tree built
# side by side, bf16 and FP8 decode alternating in one lease (run 4's bf16 batch 1 was 1.88 ms
# against run 8's 1.80 on 5e72eb2's parent); then int4 at batch 1-32 with the default
# --int4-gemv-max-rows 16.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
mkdir -p /tmp/old && tar -xzf .device/old.tar.gz -C /tmp/old
( cmake -S /tmp/old -B /tmp/bo -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake-old.log 2>&1 &&
  cmake --build /tmp/bo --target gpu_model_bench -j8 >$OUT/build-old.log 2>&1 || echo "old build failed" ) &
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_model_test -j8 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
wait
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
R1_BIN_DIR=$B timeout 120 /tmp/b/tests/gpu_model_test --gtest_filter='*Int4*:*Batch*' > $OUT/gpu_model_test.log 2>&1
echo "gpu_model_test: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_model_test.log | tr '\n' ' ')"
grep -E "Failure|int4 on CUDA|AWQ" -A3 $OUT/gpu_model_test.log | head -24
run() { local bin=$1; shift; timeout 60 $bin --model $M --random-weights --reps 1 --decode-steps 64 --contexts 128 --prompt-lens 128 "$@" 2>&1 | grep -E "^RESULT.*decode|rror" | tee -a $OUT/bench.log; }
for pass in 1 2; do
  run /tmp/bo/bin/gpu_model_bench --label old-bf16 --quantization none --batch-sizes 1,2,8
  run $B/gpu_model_bench --label new-bf16 --quantization none --batch-sizes 1,2,8
done
run /tmp/bo/bin/gpu_model_bench --label old-fp8 --quantization fp8 --batch-sizes 1,4,8
run $B/gpu_model_bench --label new-fp8 --quantization fp8 --batch-sizes 1,4,8
run $B/gpu_model_bench --label int4 --quantization int4 --batch-sizes 1,8,16,32
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
