#!/bin/bash
# The R1-shaped serving benchmark, on the GPU machine: r1-worker (CUDA) behind r1-gateway,
# driven by r1-loadtest through the gateway's OpenAI API (SSE streams).
#   - prompts: uniform 64..1,024 words;
#   - outputs: lognormal, median 2,000 tokens, sigma 1, clamped to 64..16,384 (ignore_eos, so
#     every request generates its drawn length): the long tail of R1's reasoning;
#   - closed loop at each CONCURRENCY level for DURATION seconds of sending, then the level
#     drains;
#   - a KV cache of KV_MEMORY bytes (24 GiB: 64 streams fit, 256 streams preempt).
# Prints, per level: output tok/s while sending (steady state) and overall, the mean context of
# the tokens sent while sending (the decode batch's context the level ran at), TTFT and
# inter-token latency p50/p99, failures, and the worker's preemptions during the level.
#
#   bash bench/gpu/serve_r1.sh OUTDIR
# Environment: BUILD (default /tmp/b, built already), MODEL (default /tmp/m15), CONCURRENCY
# (default 64,256), DURATION (default 60), REQUEST_TIMEOUT (seconds a request may take, default
# 600; a shorter one cuts the drain of a level short and counts the cut requests as timeouts),
# KV_MEMORY (default 25769803776), KV_DTYPE (auto), WORKER_FLAGS (extra r1-worker flags),
# TEMPERATURE (default 0: greedy; 0.6 with the checkpoint's top_p 0.95 is the R1 distills'
# generation_config, so every row samples with top-p; its files are named serve-C-tT.json).
set -uo pipefail
OUTDIR=${1:-${OUT:-/tmp/serve-r1}}
mkdir -p "$OUTDIR"
BUILD=${BUILD:-/tmp/b}
MODEL=${MODEL:-/tmp/m15}
BIN=$BUILD/bin
CONCURRENCY=${CONCURRENCY:-64,256}
DURATION=${DURATION:-60}
KV_MEMORY=${KV_MEMORY:-25769803776}
KV_DTYPE=${KV_DTYPE:-auto}
WPORT=50161; MPORT=51161; GPORT=18190

"$BIN/r1-worker" --model "$MODEL" --listen 127.0.0.1:$WPORT --device cuda --dtype bfloat16 \
  --metrics-listen 127.0.0.1:$MPORT --max-running 256 --max-waiting 4096 \
  --kv-cache-memory "$KV_MEMORY" --kv-cache-dtype "$KV_DTYPE" ${WORKER_FLAGS:-} >"$OUTDIR/serve-worker.log" 2>&1 &
wpid=$!
"$BIN/r1-gateway" --listen 127.0.0.1:$GPORT --workers 127.0.0.1:$WPORT --max-concurrent-requests 4096 \
  >"$OUTDIR/serve-gateway.log" 2>&1 &
gpid=$!
for _ in $(seq 180); do curl -fs http://127.0.0.1:$GPORT/readyz >/dev/null 2>&1 && break; sleep 1; done
preemptions() { curl -fs http://127.0.0.1:$MPORT/metrics | awk '/^r1_worker_preemptions_total/ {print $2}'; }

TEMPERATURE=${TEMPERATURE:-0}
tag=""; [ "$TEMPERATURE" != 0 ] && tag="-t$TEMPERATURE"
for c in ${CONCURRENCY//,/ }; do
  before=$(preemptions)
  timeout $((DURATION + ${REQUEST_TIMEOUT:-600} + 60)) "$BIN/r1-loadtest" --target http://127.0.0.1:$GPORT --concurrency "$c" \
    --duration "$DURATION" --prompt-len uniform:64:1024 --output-len lognormal:2000:1:64:16384 \
    --ignore-eos --temperature "$TEMPERATURE" --timeout "${REQUEST_TIMEOUT:-600}" --progress=false --json \
    >"$OUTDIR/serve-$c$tag.json" 2>"$OUTDIR/serve-$c$tag.err"
  rc=$?
  after=$(preemptions)
  python3 - "$OUTDIR/serve-$c$tag.json" "$c" "${before:-0}" "${after:-0}" "$rc" "$KV_DTYPE" "$TEMPERATURE" <<'EOF'
import json, sys
path, c, before, after, rc, kv, t = sys.argv[1:]
kv = f"{kv} temperature {t}"
try:
    r = json.load(open(path))["runs"][0]
except Exception as e:  # a failed run still prints a line
    print(f"RESULT serve-r1 streams {c} kv {kv} failed rc {rc} ({e})")
    sys.exit(0)
print(f"RESULT serve-r1 streams {c} kv {kv} ok {r['succeeded']} fail {r['failed']} "
      f"window_tok_s {r['window_output_tokens_per_s']:.0f} overall_tok_s {r['output_tokens_per_s']:.0f} "
      f"mean_context {r.get('window_mean_context_tokens', 0):.0f} "
      f"ttft_p50_ms {r['ttft_ms']['p50']:.0f} ttft_p99_ms {r['ttft_ms']['p99']:.0f} "
      f"itl_p50_ms {r['itl_ms']['p50']:.1f} itl_p99_ms {r['itl_ms']['p99']:.1f} "
      f"preemptions {float(after) - float(before):.0f} wall_s {r['duration_s']:.0f}")
EOF
done
curl -fs http://127.0.0.1:$MPORT/metrics | grep -E "^r1_worker_(preemptions|kv_cache|device_memory)" >"$OUTDIR/serve-metrics.txt"
kill "$gpid" "$wpid" 2>/dev/null
wait "$gpid" "$wpid" 2>/dev/null
