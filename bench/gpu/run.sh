#!/bin/bash
# GPU benchmark of r1serve against the transformers baseline, in one run on the GPU machine.
# From the repository root (docs/gpu.md):
#   bash bench/gpu/run.sh [OUTDIR]
# Environment: BATCHES / EAGER_BATCHES (decode batch sizes, default 1,2,4,8,16,64,256 / 1,16),
#   SMALL_BATCHES (default 1,2,4,8: also run with cuBLAS for every linear layer, label
#   r1serve-cublas, and by the compiled PyTorch peer, bench/gpu/torch_peer.py; PEER=0 skips the
#   peer, whose compilation takes about 3 minutes), BUILD (default /tmp/b; configured and built here unless SKIP_BUILD=1),
#   MODEL (default /tmp/m15; made with r1-mkmodel when missing), SERVE=1 to also run
#   r1-worker + r1-gateway + r1-loadtest at CONCURRENCY (default 1,16,64,256; 1 is the idle
#   time to first token through the gateway), TESTS=1 to run the GPU tests first, HF=0 to skip
#   the transformers baseline.
# Prints one table at the end; every raw line goes to OUTDIR/bench.log.
set -uo pipefail
OUTDIR=${1:-${OUT:-/tmp/gpu-bench}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/bench.log
: >"$LOG"
BUILD=${BUILD:-/tmp/b}
MODEL=${MODEL:-/tmp/m15}
SERVE=${SERVE:-0}
TESTS=${TESTS:-0}
HF=${HF:-1}
CONCURRENCY=${CONCURRENCY:-1,16,64,256}
log() { echo "$@" | tee -a "$LOG"; }

if [ -f .device/setup.sh ] && [ -z "${DEVICE_CMAKE_ARGS:-}" ]; then source .device/setup.sh .device/debs; fi  # (sourcing without args would pass ours)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  targets="r1-mkmodel r1-generate gpu_model_bench"
  [ "$TESTS" = 1 ] && targets="$targets gpu_model_test gpu_kernels_test gpu_engine_test"
  [ "$SERVE" = 1 ] && targets="$targets r1-worker r1-gateway r1-loadtest"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release ${DEVICE_CMAKE_ARGS:-} >"$OUTDIR/cmake.log" 2>&1 \
    || { tail -30 "$OUTDIR/cmake.log"; exit 1; }
  grep -i "r1_model: CUDA" "$OUTDIR/cmake.log"
  t=$(date +%s)
  cmake --build "$BUILD" --target $targets -j"$(nproc)" >"$OUTDIR/build.log" 2>&1 \
    || { grep -B2 -A12 -m3 "error" "$OUTDIR/build.log"; exit 1; }
  log "built $targets in $(( $(date +%s) - t )) s"
fi
BIN=$BUILD/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
if [ ! -f "$MODEL/config.json" ]; then
  "$BIN/r1-mkmodel" --preset r1-distill-qwen-1.5b --out "$MODEL" --tokenizer .cache/tokenizer/tokenizer.json 2>&1 | tail -1
fi

if [ "$TESTS" = 1 ]; then
  for t in gpu_kernels_test gpu_model_test gpu_engine_test; do
    "$BUILD/tests/$t" 2>&1 | tee "$OUTDIR/$t.log" | grep -E "^\[ *(FAILED|PASSED|SKIPPED) |Failure"
  done
fi

# Runs a command while sampling the GPU's used memory; appends "RESULT <label> gpu_memory_used_GB X".
with_mem() {
  local label=$1; shift
  local base; base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"${TMPDIR:-/tmp}/r1-mem.$label" 2>/dev/null &
  local smi=$!
  "$@" 2>&1 | tee -a "$LOG" | grep -E "^RESULT|rror"
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  local peak; peak=$(sort -n "${TMPDIR:-/tmp}/r1-mem.$label" | tail -1)
  log "RESULT $label gpu_memory_used_GB $(python3 -c "print(f'{(${peak:-0} - ${base:-0}) * 1048576 / 1e9:.2f}')")"
}

with_mem r1serve-eager "$BIN/gpu_model_bench" --model "$MODEL" --label r1serve-eager --cuda-graphs=false \
  --batch-sizes "${EAGER_BATCHES:-1,16}"
with_mem r1serve "$BIN/gpu_model_bench" --model "$MODEL" --label r1serve --cuda-graphs=true \
  --batch-sizes "${BATCHES:-1,2,4,8,16,64,256}"
SMALL_BATCHES=${SMALL_BATCHES:-1,2,4,8}
if [ -n "$SMALL_BATCHES" ]; then
  "$BIN/gpu_model_bench" --model "$MODEL" --label r1serve-cublas --gemv-max-rows 0 --prompt-lens 16 --reps 1 \
    --batch-sizes "$SMALL_BATCHES" 2>&1 | tee -a "$LOG" | grep -E "^RESULT.*decode|rror"
  [ "${PEER:-1}" = 1 ] && timeout "${PEER_TIMEOUT:-300}" python3 bench/gpu/torch_peer.py --model "$MODEL" \
    --batch-sizes "$SMALL_BATCHES" --contexts 128 2>&1 | tee -a "$LOG" | grep -E "^RESULT|rror"
fi
[ "$HF" = 1 ] && with_mem transformers env PYTHONUNBUFFERED=1 python3 bench/gpu/hf_baseline.py --model "$MODEL"

# r1-generate as a user runs it (its own timing line on stderr).
ids=$(python3 -c "print(','.join(str((i * 7919) % 150000) for i in range(128)))")
"$BIN/r1-generate" --model "$MODEL" --device cuda --dtype bfloat16 --prompt-ids "$ids" --max-tokens 256 \
  --ignore-eos --output ids 2>&1 >/dev/null | tee -a "$LOG"

if [ "$SERVE" = 1 ]; then
  WPORT=50151; GPORT=18180
  "$BIN/r1-worker" --model "$MODEL" --listen 127.0.0.1:$WPORT --device cuda --dtype bfloat16 \
    --metrics-listen 127.0.0.1:$((WPORT + 1000)) --max-running 256 --max-waiting 1024 \
    --kv-cache-memory $((16 << 30)) >"$OUTDIR/worker.log" 2>&1 &
  wpid=$!
  "$BIN/r1-gateway" --listen 127.0.0.1:$GPORT --workers 127.0.0.1:$WPORT >"$OUTDIR/gateway.log" 2>&1 &
  gpid=$!
  for _ in $(seq 120); do curl -fs http://127.0.0.1:$GPORT/readyz >/dev/null 2>&1 && break; sleep 1; done
  timeout "${LOADTEST_TIMEOUT:-240}" "$BIN/r1-loadtest" --target http://127.0.0.1:$GPORT --concurrency "$CONCURRENCY" --duration "${DURATION:-20}" \
    --warmup 8 --prompt-len 128 --output-len 128 --progress=false --json >"$OUTDIR/loadtest.json" 2>"$OUTDIR/loadtest.err"
  echo "loadtest exit $?" | tee -a "$LOG"
  tail -3 "$OUTDIR/loadtest.err"
  curl -fs http://127.0.0.1:$((WPORT + 1000))/metrics | grep -E "^r1_worker_.*(memory|kv_cache)" | tee -a "$LOG"
  log "RESULT serve gpu_memory_used_GB $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1 | awk '{printf "%.2f", $1*1048576/1e9}')"
  kill "$gpid" "$wpid" 2>/dev/null; wait "$gpid" "$wpid" 2>/dev/null
fi

python3 bench/gpu/table.py "$LOG" ${SERVE:+"$OUTDIR/loadtest.json"}
