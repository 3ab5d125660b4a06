#!/bin/bash
# Issue 14's GPU goal in one run on the GPU machine: the decode step at batch 64 with every
# sequence constrained by a structured output, against unconstrained (and half constrained), on
# the random-weight 1.5B checkpoint, greedy and at temperature 0.6 / top_p 0.95, with the masks
# made while the GPU computes (the engine's way) and before the model call (the old order).
# First the GPU test of masks on CUDA (GpuEngineTest.MaskedRowsOnCudaTakeOnlyAllowedTokens).
# From the repository root, with .device and .cache/tokenizer carried:
#   bash bench/gpu/constrained_step.sh OUTDIR
# Environment: BUILD (default /tmp/b; configured and built here unless SKIP_BUILD=1), MODEL
# (default /tmp/m15; made with r1-mkmodel and the tokenizer when missing), BATCH (64), STEPS
# (64), REPS (3). The table and RESULT lines go to OUTDIR/constrained_step.log.
set -uo pipefail
OUTDIR=${1:-${OUT:-/tmp/constrained-step}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/constrained_step.log
: >"$LOG"
BUILD=${BUILD:-/tmp/b}
MODEL=${MODEL:-/tmp/m15}
if [ -f .device/setup.sh ] && [ -z "${DEVICE_CMAKE_ARGS:-}" ]; then source .device/setup.sh .device/debs >/dev/null; fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 ${DEVICE_CMAKE_ARGS:-} >"$OUTDIR/cmake.log" 2>&1 \
    || { tail -30 "$OUTDIR/cmake.log"; exit 1; }
  t=$(date +%s)
  cmake --build "$BUILD" --target r1-mkmodel constrained_step_bench gpu_engine_test -j"$(nproc)" >"$OUTDIR/build.log" 2>&1 \
    || { grep -B2 -A12 -m3 "error" "$OUTDIR/build.log"; exit 1; }
  echo "built in $(( $(date +%s) - t )) s" | tee -a "$LOG"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
timeout 300 "$BUILD/tests/gpu_engine_test" --gtest_filter='GpuEngineTest.MaskedRows*' 2>&1 \
  | grep -E "^\[  (     OK|FAILED|  PASSED) |Failure|rror" | tee -a "$LOG"
if [ ! -f "$MODEL/tokenizer.json" ]; then
  "$BUILD/bin/r1-mkmodel" --preset r1-distill-qwen-1.5b --out "$MODEL" --force \
    --tokenizer .cache/tokenizer/tokenizer.json 2>&1 | tail -1
fi
"$BUILD/bin/constrained_step_bench" --model "$MODEL" --device cuda --batch "${BATCH:-64}" \
  --steps "${STEPS:-64}" --reps "${REPS:-3}" --shares 0,0.5,1 --temperatures 0,0.6 --overlap both \
  2>&1 | tee -a "$LOG"
