#!/bin/bash
# Device run 1 of int4 weights on CUDA (issue 18 item 5, 2026-12-02): build, the int4 kernel and
# model tests (with the GEMV tests of the other formats, which share the kernel), then decode at
# batch 1-256 with bf16, int4 and FP8 weights, and int4 with larger steps dequantized for cuBLAS.
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
R1_BIN_DIR=$B timeout 150 /tmp/b/tests/gpu_kernels_test --gtest_filter='*Gemv*' > $OUT/gpu_kernels_test.log 2>&1
echo "gpu_kernels_test: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_kernels_test.log | tr '\n' ' ')"
grep -E "Failure" -A4 $OUT/gpu_kernels_test.log | head -16
R1_BIN_DIR=$B timeout 150 /tmp/b/tests/gpu_model_test --gtest_filter='*Int4*:*Fp8Weights*' > $OUT/gpu_model_test.log 2>&1
echo "gpu_model_test: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_model_test.log | tr '\n' ' ')"
grep -E "Failure|min cosine" -A3 $OUT/gpu_model_test.log | head -24
run() { timeout 120 $B/gpu_model_bench --model $M --random-weights --reps 1 --decode-steps 64 --contexts 128 --prompt-lens 128 "$@" 2>&1 | grep -E "^RESULT.*(decode|bytes_per_step|load_s)|rror" | tee -a $OUT/bench.log; }
run --label int4 --quantization int4 --batch-sizes 1,2,4,8,16,32,64,256
run --label int4-dequant8 --quantization int4 --int4-gemv-max-rows 8 --batch-sizes 16,32,64
run --label bf16 --quantization none --batch-sizes 1,2,4,8,16,32,64,256
run --label fp8 --quantization fp8 --batch-sizes 1,8,16,32,64
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
