#!/bin/bash
# Device run 8 (2026-12-02): the review's tree (the shared linear-weight loader, the lm_head GEMV
# check): bench/gpu/run.sh with its GPU tests (TESTS=1; no transformers baseline or compiled
# peer, to fit the session's device time), then gpu_sampling_test.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
export DEVICE_CMAKE_ARGS="$DEVICE_CMAKE_ARGS -DR1_CUDA_ARCHITECTURES=90" R1_BIN_DIR=/tmp/b/bin
TESTS=1 PEER=0 HF=0 BATCHES=1,8,64,256 bash bench/gpu/run.sh $OUT
cmake --build /tmp/b --target gpu_sampling_test -j16 >$OUT/build-sampling.log 2>&1 || { tail -20 $OUT/build-sampling.log; exit 1; }
/tmp/b/tests/gpu_sampling_test > $OUT/gpu_sampling_test.log 2>&1
echo "gpu_sampling_test: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_sampling_test.log | tr '\n' ' ')"
