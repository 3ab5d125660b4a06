#!/bin/bash
# Device run 29 (2026-12-03, sixth session): the R1-shaped serving benchmark re-measured at 64
# streams on the tree of 1eaccc5 (the split count from the cost model, RoPE in the qkv GEMV,
# the GEMV's half-ring reloads; last measured in run 5), and the batch-64 grid cells it leans
# on in the same lease; then, as time allows, bench/gpu/run.sh at batch 1-8 against the compiled
# PyTorch peer (issue 16's table; without the transformers baseline).
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
source bench/gpu/device_run.sh "$OUT" r1-mkmodel r1-worker r1-gateway r1-loadtest r1-generate gpu_model_bench
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --out /tmp/m15 --tokenizer .cache/tokenizer/tokenizer.json 2>&1 | tail -1
echo "== model made $(( $(date +%s) - t0 )) s"
CONCURRENCY=64 DURATION=40 REQUEST_TIMEOUT=60 BUILD=/tmp/b MODEL=/tmp/m15 bash bench/gpu/serve_r1.sh "$OUT" | tee -a $OUT/bench.log
echo "== served $(( $(date +%s) - t0 )) s"
bench b64 --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 64 --contexts 2048,4096,16384
left=$(( 585 - ($(date +%s) - t0) ))
if [ $left -gt 150 ]; then
  mkdir -p $OUT/runsh
  SKIP_BUILD=1 HF=0 BATCHES=1,2,4,8 EAGER_BATCHES=1 PEER_TIMEOUT=$((left - 60)) BUILD=/tmp/b MODEL=/tmp/m15 \
    timeout $left bash bench/gpu/run.sh $OUT/runsh | tail -25
  cp $OUT/runsh/bench.log $OUT/runsh-bench.log
fi
echo "== end $(( $(date +%s) - t0 )) s"
cd $OUT && tar czf logs.tgz *.log *.json *.err runsh 2>/dev/null; rm -rf *.log *.err runsh
