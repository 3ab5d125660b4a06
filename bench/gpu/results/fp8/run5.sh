#!/bin/bash
# FP8 weights, device run 5: loading a compressed-tensors FP8 checkpoint (r1-mkmodel
# --quantization fp8) on the GPU, against quantizing its bf16 twin at load; the FP8 model tests.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
R1_BIN_DIR=/tmp/b/bin timeout 120 /tmp/b/tests/gpu_model_test --gtest_filter='GpuLongContextTest.*:GpuFp8*' > $OUT/gpu_model_test.log 2>&1
grep -E "^\[ *(PASSED|FAILED|  OK) |Failure|fp8 weights|FP8 checkpoint" -A3 $OUT/gpu_model_test.log | head -40
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
