#!/bin/bash
# Device run 21 (2026-12-03): decode attention's key splits merged by their own kernel
# (MergeSplitsKernel) instead of the last block of each kv head, the split rule's floor at 2
# tiles instead of 8, and the GEMV's weights read with ld.global.nc + L2::256B. Every GPU suite,
# the decode grid, then a split sweep at batch 1.
source bench/gpu/device_run.sh "${1:-$OUT}" r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test
suite gpu_kernels_test
suite gpu_model_test
suite gpu_engine_test
grep "paged attention.*nsplit 256" $OUT/gpu_kernels_test.log | head -4
bench small --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4,8 --contexts 128,4096,16384,32768
bench large --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 16,64 --contexts 128,4096,16384,32768
for sp in 8 32 64 128 256; do
  bench b1-sp$sp --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1 --contexts 4096,16384,32768 --attn-splits $sp
done
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
