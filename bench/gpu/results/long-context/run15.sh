#!/bin/bash
# Device run 15 (2026-12-03): the tree as committed after runs 12-14 (their variants removed)
# with the GEMV dispatch folded into one helper per weight format and the FP8/int4 GEMV tests
# sharing one epilogue check. Every GPU suite, then one pass of the decode grid.
source bench/gpu/device_run.sh "${1:-$OUT}" r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test
suite gpu_kernels_test
suite gpu_model_test
suite gpu_engine_test
suite gpu_sampling_test
bench final --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4,8,16,64,256 --contexts 128,4096,16384
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
