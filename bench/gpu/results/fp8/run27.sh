#!/bin/bash
# Device run 27 (2026-12-03, sixth session; the tree 1eaccc5 with 2026-12-03-run27-e4m3-activations.diff
# applied, which was then not kept): the FP8 GEMV with e4m3 activations (GemvArgs::fp8_x,
# --gemv-fp8-activations, mma m16n8k32 on e4m3) against x staged as f16 (W8A16, the kernel
# before): its kernel tests and every GPU suite (the first GPU run of 2f0a70e, a3c2206 and
# 1eaccc5 too), gemv_bench on bf16, fp8 and fp8a8, then the FP8 model at batch 1-8 with
# the activations as f16 and as e4m3 in alternating passes, beside bf16 in the same run.
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
source .device/setup.sh .device/debs >/dev/null
nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu worker/model/cuda/kernels.cu \
  -lcublas -lcublasLt -o /tmp/gb > /tmp/gb.log 2>&1 &
source bench/gpu/device_run.sh "$OUT" r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test
wait
[ -x /tmp/gb ] || { echo "gemv_bench: build failed"; tail -5 /tmp/gb.log; }
suite gpu_kernels_test
summ() { grep -E '^(READ|STEP)|GEMV.*M=1 ' $1 | sed -E 's/ (N|K|bytes)=[^ ]+//g'; }
timeout 120 /tmp/gb --format bf16,fp8,fp8a8 --no-cublas > $OUT/gemv.log 2>&1; summ $OUT/gemv.log
echo "== gemv done $(( $(date +%s) - t0 )) s"
for pass in 1 2; do
  for a8 in false true; do
    bench fp8-a8$a8-p$pass --quantization fp8 --gemv-fp8-activations=$a8 --prompt-lens 128 --reps 1 --decode-steps 32 \
      --batch-sizes 1,2,4 --contexts 128,16384
  done
done
bench bf16 --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4 --contexts 128,16384
bench fp8-a8true-rows8 --quantization fp8 --gemv-max-rows 8 --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 8 --contexts 128
bench fp8-a8true-gemm8 --quantization fp8 --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 8 --contexts 128
suite gpu_model_test
suite gpu_engine_test
suite gpu_sampling_test
echo "== end $(( $(date +%s) - t0 )) s"
cd $OUT && tar czf logs.tgz *.log && rm -f *.log
