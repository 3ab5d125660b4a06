#!/bin/bash
# Device run 21b (2026-12-03), on run 21's warm machine right after it (/tmp/b built): decode at
# batch 1, 16 and 64 over 128 and 16,384 keys with bf16, FP8 and int4 weights, two passes.
source bench/gpu/device_run.sh "${1:-$OUT}" r1-mkmodel gpu_model_bench >/dev/null
for p in 1 2; do for q in none fp8 int4; do
  bench q-$q-p$p --quantization $q --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,16,64 --contexts 128,16384 >/dev/null
done; done
grep decode $OUT/bench.log | awk '{print $2, $5, $7, $10, $14}'
