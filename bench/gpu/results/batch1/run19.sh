#!/bin/bash
# Device run 19: the GPU tests on the committed tree (HEAD; the copy's uncommitted changes are
# dropped), and decode attention's key splits at batch 1 (128, 4k, 16k keys).
OUT=${1:-$OUT}
set -uo pipefail
if git rev-parse HEAD >/dev/null 2>&1; then git checkout -q HEAD -- . && git clean -qfd worker tests bench; echo "tree: $(git rev-parse --short HEAD), $(git status --short | wc -l) changed paths"; else echo "no .git in the copy"; fi
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m3 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15
[ -f $M/config.json ] || $B/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --tokenizer .cache/tokenizer/tokenizer.json | tail -1
for t in gpu_kernels_test gpu_model_test gpu_engine_test; do
  timeout 120 /tmp/b/tests/$t > $OUT/$t.log 2>&1
  grep -E "^\[ *(FAILED|PASSED|SKIPPED) |Failure" $OUT/$t.log | head -8
done
bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 500 ] || { echo "skipped $label (time)"; return; }
  timeout 60 $B/gpu_model_bench --model $M --label $label --prompt-lens 16 --reps 1 "$@" 2>&1 | grep -E "^RESULT.*decode|rror" | tee -a $OUT/bench.log
}
for pass in 1 2; do
  for s in 0 1 2 4 8; do bench b1-splits-$s --batch-sizes 1 --contexts 128,4096,16384 --attn-splits $s; done
done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
