#!/bin/bash
# Device run 28 (2026-12-03, sixth session): the tensor-core GEMV at one block an SM
# (--gemv-blocks-per-sm 1, GemvArgs::blocks_per_sm) against as many as fit (2), so that the
# next kernel's blocks fit beside it under programmatic dependent launch: gemv_bench's step of
# GEMVs in bf16, FP8 and int4, and the model at batch 1-8, alternating, two passes each.
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
source .device/setup.sh .device/debs >/dev/null
nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu worker/model/cuda/kernels.cu \
  -lcublas -lcublasLt -o /tmp/gb > /tmp/gb.log 2>&1 &
source bench/gpu/device_run.sh "$OUT" r1-mkmodel gpu_model_bench gpu_kernels_test
wait
[ -x /tmp/gb ] || { echo "gemv_bench: build failed"; tail -5 /tmp/gb.log; }
which nsys ncu
summ() { grep -E '^(READ|STEP)|GEMV.*M=1 ' $1 | sed -E 's/ (N|K|bytes)=[^ ]+//g'; }
for pass in 1 2; do
  for b in 0 1; do
    timeout 100 /tmp/gb --format bf16,fp8,int4 --no-cublas --blocks-per-sm $b > $OUT/gemv-b$b-p$pass.log 2>&1
    echo "== blocks/SM $b pass $pass"; summ $OUT/gemv-b$b-p$pass.log
  done
done
echo "== gemv done $(( $(date +%s) - t0 )) s"
for pass in 1 2; do
  for b in 0 1; do
    bench b$b-p$pass --gemv-blocks-per-sm $b --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4,8 \
      --contexts 128,16384
  done
done
for b in 0 1; do
  bench fp8-b$b --quantization fp8 --gemv-blocks-per-sm $b --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1 --contexts 128
done
suite gpu_kernels_test
echo "== end $(( $(date +%s) - t0 )) s"
cd $OUT && tar czf logs.tgz *.log && rm -f *.log
