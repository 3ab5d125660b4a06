#!/bin/bash
# Decode speed of the larger distill shapes (issue 17 item 2), in one run on the GPU machine,
# from the repository root with .device carried:
#   bash bench/gpu/distill_shapes.sh OUTDIR
# For each of PRESETS (default "r1-distill-qwen-7b r1-distill-qwen-32b"; any r1-mkmodel preset,
# e.g. r1-distill-llama-8b), one at a time: r1-mkmodel writes the preset's config.json only, and
# gpu_model_bench draws random bf16 weights on the GPU (--random-weights: the 32B's 66 GB
# checkpoint would not fit the machine's disk, and writing the 7B's 15 GB costs more device time
# than the bench), then measures decode at BATCHES (default 1,64) x CONTEXTS (default 128,2048)
# and time to first token of a 128- and a 2,048-token prompt, each figure against its bound.
# Builds r1-mkmodel and gpu_model_bench into BUILD (default /tmp/b) first, with long_context.sh's
# build stage, unless BUILD already has both.
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

for preset in $PRESETS; do
  log "== $preset at $(date +%T)"
  model=$(mktemp -d)/$preset
  "$BIN/r1-mkmodel" --preset "$preset" --config-only --out "$model" >/dev/null || { log "no preset $preset"; continue; }
  "$BIN/gpu_model_bench" --model "$model" --random-weights --label "$preset" --batch-sizes "$BATCHES" \
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
