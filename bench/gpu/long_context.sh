#!/bin/bash
# The long-context figures of docs/gpu.md, in one run on the GPU machine (from the repository
# root, with .device carried; see docs/gpu.md):
#   bash bench/gpu/long_context.sh OUTDIR
# Stages (STAGES, default "build tests grid peer ttft fp8 serve"):
#   build  configure and build the GPU targets into BUILD (default /tmp/b)
#   tests  the GPU tests (kernels, model, engine)
#   grid   gpu_model_bench decode grid: BATCHES x CONTEXTS, bf16 KV cache
#   peer   bench/gpu/torch_peer.py on the same grid (plain PyTorch, torch.compile)
#   ttft   time to first token of 8k and 32k-token prompts, at the worker's default chunk and
#          in one step, against the FLOP bound
#   fp8    the decode grid again with --kv-cache-dtype fp8
#   serve  bench/gpu/serve_r1.sh: the R1-shaped serving benchmark through r1-gateway
# Every RESULT line goes to OUTDIR/long_context.log; bench/gpu/table.py prints the tables. The
# other logs stay in WORK (default /tmp/lc); the tests' logs are copied to OUTDIR at the end.
set -uo pipefail
OUTDIR=${1:-${OUT:-/tmp/long-context}}
WORK=${WORK:-/tmp/lc}
mkdir -p "$OUTDIR" "$WORK"
LOG=$OUTDIR/long_context.log
touch "$LOG"
BUILD=${BUILD:-/tmp/b}
MODEL=${MODEL:-/tmp/m15}
STAGES=${STAGES:-build tests grid peer ttft fp8 serve}
BATCHES=${BATCHES:-1,16,64,256}
CONTEXTS=${CONTEXTS:-128,4096,16384,32768}
STEPS=${STEPS:-64}
has() { [[ " $STAGES " == *" $1 "* ]]; }
log() { echo "$@" | tee -a "$LOG"; }
stamp() { log "== $1 at $(date +%T)"; }

if [ -f .device/setup.sh ] && [ -z "${DEVICE_CMAKE_ARGS:-}" ]; then source .device/setup.sh .device/debs >/dev/null; fi
if has build; then
  stamp build
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 ${DEVICE_CMAKE_ARGS:-} >"$WORK/cmake.log" 2>&1 \
    || { tail -30 "$WORK/cmake.log"; exit 1; }
  grep -i "r1_model: CUDA" "$WORK/cmake.log"
  grep -h "_flash_attention_forward(" -A3 "$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/include/ATen/ops/_flash_attention_forward.h" 2>/dev/null | head -8 >"$WORK/flash_signature.txt"
  targets="r1-mkmodel r1-generate r1-worker r1-gateway r1-loadtest gpu_model_bench gpu_model_test gpu_kernels_test gpu_engine_test"
  t=$(date +%s)
  cmake --build "$BUILD" --target $targets -j"$(nproc)" >"$WORK/build.log" 2>&1 \
    || { grep -B2 -A14 -m6 "error" "$WORK/build.log"; cat "$WORK/flash_signature.txt"; cp "$WORK/build.log" "$OUTDIR/"; exit 1; }
  log "built in $(( $(date +%s) - t )) s"
fi
BIN=$BUILD/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
if [ "$STAGES" != build ] && [ ! -f "$MODEL/config.json" ]; then  # (a build alone needs no model)
  "$BIN/r1-mkmodel" --preset r1-distill-qwen-1.5b --out "$MODEL" --tokenizer .cache/tokenizer/tokenizer.json 2>&1 | tail -1
fi
if has tests; then
  stamp tests
  for t in gpu_kernels_test gpu_model_test gpu_engine_test; do
    timeout 300 "$BUILD/tests/$t" >"$WORK/$t.log" 2>&1
    log "$t exit $? $(grep -cE '^\[       OK \]' "$WORK/$t.log") ok, failed: $(grep -E '^\[  FAILED  \]' "$WORK/$t.log" | sort -u | tr '\n' ' ')"
    grep -E "max \||kernels vs|fp8 KV|Failure|error|rror:" "$WORK/$t.log" | head -60 >>"$LOG"
  done
fi
bench() { "$BIN/gpu_model_bench" --model "$MODEL" "$@" 2>&1 | tee -a "$LOG" | grep -E "^RESULT|rror"; }
if has grid; then
  stamp grid
  bench --label r1serve --batch-sizes "$BATCHES" --contexts "$CONTEXTS" --decode-steps "$STEPS" --prompt-lens 128 --reps 2
fi
if has peer; then
  stamp peer
  timeout "${PEER_TIMEOUT:-420}" env PYTHONUNBUFFERED=1 python3 bench/gpu/torch_peer.py --model "$MODEL" \
    --batch-sizes "$BATCHES" --contexts "$CONTEXTS" --steps "$STEPS" 2>"$WORK/peer.err" | tee -a "$LOG"
  tail -5 "$WORK/peer.err"
fi
if has ttft; then
  stamp ttft
  bench --label r1serve-ttft --prompt-lens 8192,32768 --prefill-chunk 2048 --batch-sizes 1 --contexts 128 --decode-steps 8 --reps 2
  bench --label r1serve-ttft-whole --prompt-lens 8192,32768 --prefill-chunk 0 --batch-sizes 1 --contexts 128 --decode-steps 8 --reps 2
fi
if has fp8; then
  stamp fp8
  bench --label r1serve-fp8 --kv-cache-dtype fp8 --batch-sizes "$BATCHES" --contexts "$CONTEXTS" --decode-steps "$STEPS" --prompt-lens 128 --reps 2
fi
if has serve; then
  stamp serve
  BUILD=$BUILD MODEL=$MODEL bash bench/gpu/serve_r1.sh "$WORK" | tee -a "$LOG"
  cp "$WORK"/serve-*.json "$OUTDIR"/ 2>/dev/null
fi
stamp done
for t in gpu_kernels_test gpu_model_test gpu_engine_test; do [ -f "$WORK/$t.log" ] && cp "$WORK/$t.log" "$OUTDIR/"; done
python3 bench/gpu/table.py --grid "$LOG"
