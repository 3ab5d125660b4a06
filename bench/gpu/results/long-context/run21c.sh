#!/bin/bash
# Device run 21c (2026-12-03), on run 21's warm machine: ncu of graph-replayed batch-1 steps at
# 128 and 16,384 keys. Summaries: 2026-12-03-run21c-ncu-b1.log (the CSV, 7.7 MB, not kept).
source .device/setup.sh .device/debs >/dev/null
ncu --graph-profiling node --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv \
  --page raw --log-file $OUT/ncu-b1.csv /tmp/b/bin/gpu_model_bench --model /tmp/m15c --random-weights \
  --prompt-lens 16 --reps 1 --batch-sizes 1 --contexts 128,16384 --decode-steps 2
