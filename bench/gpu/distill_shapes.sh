#!/bin/bash
# Decode speed of the larger distill shapes (issue 17 item 2), in one run on the GPU machine,
# from the repository root with .device carried:
#   bash bench/gpu/distill_shapes.sh OUTDIR
# For each of PRESETS (default "r1-distill-qwen-7b r1-distill-qwen-32b"; any r1-mkmodel preset,
# e.g. r1-distill-llama-8b), one at a time: r1-mkmodel writes the random-weight bf16 checkpoint
# (15 GB for the 7B, 66 GB for the 32B) where there is room, gpu_model_bench measures decode at
# BATCHES (default 1,64) x CONTEXTS (default 128,2048) and time to first token of a 128- and a
# 2,048-token prompt, each figure against its bound, and the checkpoint is deleted before the
# next one. Builds r1-mkmodel and gpu_model_bench into BUILD (default /tmp/b) first, with
# long_context.sh's build stage, unless BUILD already has both.
# Every RESULT line goes to OUTDIR/distill_shapes.log; the table at the end is printed from it.
set -uo pipefail
OUTDIR=${1:-${OUT:-/tmp/distill-shapes}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/distill_shapes.log
BUILD=${BUILD:-/tmp/b}
PRESETS=${PRESETS:-r1-distill-qwen-7b r1-distill-qwen-32b}
BATCHES=${BATCHES:-1,64}
CONTEXTS=${CONTEXTS:-128,2048}
STEPS=${STEPS:-64}
log() { echo "$@" | tee -a "$LOG"; }

# The carried Debian packages the binaries link against (as long_context.sh does).
if [ -f .device/setup.sh ] && [ -z "${DEVICE_CMAKE_ARGS:-}" ]; then source .device/setup.sh .device/debs >/dev/null; fi

if [ ! -x "$BUILD/bin/gpu_model_bench" ] || [ ! -x "$BUILD/bin/r1-mkmodel" ]; then
  BUILD=$BUILD STAGES=build bash bench/gpu/long_context.sh "$OUTDIR/build" || exit 1
fi
BIN=$BUILD/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"

# A directory with room for `bytes` of checkpoint (the disk may be smaller than the 32B).
room_for() {
  local bytes=$1 d
  for d in ${MODEL_DIRS:-/tmp /dev/shm $PWD/.cache}; do
    mkdir -p "$d" 2>/dev/null || continue
    local avail
    avail=$(df --output=avail -B1 "$d" 2>/dev/null | tail -1)
    if [ -n "$avail" ] && [ "$avail" -gt $(( bytes + (2 << 30) )) ]; then echo "$d"; return 0; fi
  done
  return 1
}

for preset in $PRESETS; do
  log "== $preset at $(date +%T)"
  # Its size from the config alone (bf16: two bytes a parameter).
  cfgdir=$(mktemp -d)
  "$BIN/r1-mkmodel" --preset "$preset" --config-only --out "$cfgdir/m" || { log "no preset $preset"; continue; }
  bytes=$(python3 -c 'import json,sys
c = json.load(open(sys.argv[1]))
H, I, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
D = c.get("head_dim") or H // c["num_attention_heads"]
q, kv = c["num_attention_heads"] * D, c["num_key_value_heads"] * D
per_layer = H * (q + 2 * kv) + q * H + 3 * H * I + 2 * H
print(2 * (L * per_layer + V * H * (1 if c["tie_word_embeddings"] else 2) + H))' "$cfgdir/m/config.json")
  rm -rf "$cfgdir"
  dir=$(room_for "$bytes") || { log "RESULT $preset skipped: no directory with $bytes bytes free"; continue; }
  model=$dir/r1-$preset
  rm -rf "$model"
  t=$(date +%s)
  "$BIN/r1-mkmodel" --preset "$preset" --out "$model" 2>&1 | tail -1 | tee -a "$LOG"
  log "made $preset ($bytes bytes) in $dir in $(( $(date +%s) - t )) s"
  "$BIN/gpu_model_bench" --model "$model" --label "$preset" --batch-sizes "$BATCHES" \
    --contexts "$CONTEXTS" --decode-steps "$STEPS" --prompt-lens 128,2048 --reps 3 2>&1 \
    | tee -a "$LOG" | grep -E "^RESULT|rror"
  rm -rf "$model"
done
log "== done at $(date +%T)"

# decode tok/s per preset against its bound, and the batch-1 bound's bytes.
echo
awk '/^RESULT .* copy_bandwidth_GBs/ { bytes[$2] = $6; bw[$2] = $4 }
     /^RESULT .* decode batch .* tok_s/ {
       printf "%-24s batch %4s context %6s  tok/s %9s  bound %7s  frac %s  (step ms median %s, p99 %s; weights %s GB read at %s GB/s)\n",
              $2, $5, $7, $14, $16, $18, $10, $12, bytes[$2], bw[$2] }
     /^RESULT .* ttft_ms/ { print $2, $3, $4, $5, $6, $7, "median", $9, "ms, FLOP bound", $13, "ms, frac", $15 }
     /^RESULT .* skipped/ { print }' "$LOG"
