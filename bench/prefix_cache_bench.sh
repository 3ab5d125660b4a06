#!/bin/bash
# The prefix cache's time to first token on CPU with the 1.5B shape: a worker with a
# random-weight r1-distill-qwen-1.5b checkpoint, a 2,000-token prompt sent cold and then again,
# for three different prompts (worker_bench --repeat-prompt; the medians come last), then the
# same with --enable-prefix-caching=false for comparison.
#
#   bench/prefix_cache_bench.sh [BIN_DIR (build/bin)] [MODEL_DIR (/tmp/r1-1.5b)] [PROMPT_TOKENS (2000)]
#
# Extra worker flags in WORKER_FLAGS (e.g. WORKER_FLAGS="--threads 8"). The model is made with
# r1-mkmodel when MODEL_DIR has none (3.55 GB).
set -euo pipefail
BIN=${1:-build/bin}
MODEL=${2:-/tmp/r1-1.5b}
TOKENS=${3:-2000}
[ -f "$MODEL/config.json" ] || "$BIN/r1-mkmodel" --preset r1-distill-qwen-1.5b --out "$MODEL"
LOG=$(mktemp /tmp/prefix-cache-bench.XXXXXX)
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); worker log $LOG"

run() {  # run CACHING(true|false)
  "$BIN/r1-worker" --model "$MODEL" --listen 127.0.0.1:0 --device cpu --log-level warning \
    --enable-prefix-caching="$1" ${WORKER_FLAGS:-} > "$LOG" 2>&1 &
  local pid=$! port=""
  for _ in $(seq 1 600); do
    port=$(sed -n 's/.*serving .* on [^ ]*:\([0-9]*\).*/\1/p' "$LOG")
    [ -n "$port" ] && break
    kill -0 $pid 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 1
  done
  echo "## --enable-prefix-caching=$1"
  "$BIN/worker_bench" --target "127.0.0.1:$port" --streams "" --long-prompt 0 \
    --repeat-prompt "$TOKENS" --repeat-pairs 3 || true
  kill $pid
  wait $pid 2>/dev/null || true
}
run true
run false
