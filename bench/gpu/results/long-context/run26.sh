#!/bin/bash
# Device run 26 (2026-12-03): the final tree of the session (the split count from the refitted
# cost model, RoPE and the K/V write in the qkv GEMV, the GEMV's half-ring reloads):
# gpu_kernels_test (gpu_model_test ran on the first fit in run 25; the device time left allowed
# one suite), the decode grid, and cells at the split counts of the rule before (commit
# a29d45b's PagedAttentionSplits for the model's buckets) for a same-run comparison. (The
# device's copy of the tree reports its git HEAD as a29d45b; the files are the session's.)
source bench/gpu/device_run.sh "${1:-$OUT}" r1-mkmodel gpu_model_bench gpu_kernels_test
suite gpu_kernels_test
bench small --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4,8 --contexts 128,4096,16384,32768
bench large --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 16,64 --contexts 128,4096,16384,32768
for cell in "64 16384 16" "16 32768 32" "64 4096 4"; do
  set -- $cell
  bench old-$1-$2 --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes $1 --contexts $2 --attn-splits $3
done
echo "== end $(( $(date +%s) - t0 )) s"

# Then, on the same warm machine (runs 26b and 26c), the rest of the suites the change touches:
#   cmake --build /tmp/b --target gpu_model_test -j16 && R1_BIN_DIR=/tmp/b/bin /tmp/b/tests/gpu_model_test
#   cmake --build /tmp/b --target gpu_engine_test -j16 && R1_BIN_DIR=/tmp/b/bin /tmp/b/tests/gpu_engine_test
# (gpu_sampling_test's code did not change; it passed in run 25.)
