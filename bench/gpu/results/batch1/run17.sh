#!/bin/bash
# Device run 17 (issue 16): ncu profile of one batch-1 and one batch-8 graph-replayed decode step
# with the final tensor-core GEMV (the profile table of docs/gpu.md).
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m3 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15
[ -f $M/config.json ] || $B/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --tokenizer .cache/tokenizer/tokenizer.json | tail -1
for b in 1; do
  timeout 90 ncu --graph-profiling node --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv --page raw --log-file $OUT/ncu-b$b.csv $B/gpu_model_bench --model $M --gemv-max-rows 8 \
    --prompt-lens 16 --reps 1 --batch-sizes $b --contexts 128 --decode-steps 1 >/dev/null 2>&1
  python3 bench/gpu/ncu_summary.py $OUT/ncu-b$b.csv 2>&1 | tail -9
done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
