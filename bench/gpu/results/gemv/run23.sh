#!/bin/bash
# Device run 23 (2026-12-03): the streaming GEMV (GemvStreamKernel: each warp-wide load 512
# contiguous bytes of one W row, two batches of loads in flight a lane) against the tensor-core
# GEMV and cuBLAS, in gemv_bench (format bf16s) and in the model (--gemv-stream); every GPU suite
# on the tree (the first GPU run of commits 623a110 and 7554443 too). Variant g1: the streaming
# GEMV with 8 loads a batch and 2 blocks an SM (g0: 4 and 3), and the tensor-core GEMV's ring
# reloaded a half at a time (kTgIssueByHalves).
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
mkdir -p /tmp/gv
K=worker/model/cuda/kernels.cu
cp $K /tmp/gv/g0.cu
sed -e 's/^constexpr int kGsBatch = 4; /constexpr int kGsBatch = 8; /' \
    -e 's/^constexpr int kGsMinBlocks = 3; /constexpr int kGsMinBlocks = 2; /' \
    -e 's/^constexpr bool kTgIssueByHalves = false;/constexpr bool kTgIssueByHalves = true;/' $K > /tmp/gv/g1.cu
[ $(diff /tmp/gv/g0.cu /tmp/gv/g1.cu | grep -c '^>') = 3 ] || echo "g1: sed did not change three lines"
source .device/setup.sh .device/debs >/dev/null
for v in g0 g1; do
  nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu /tmp/gv/$v.cu \
    -lcublas -lcublasLt -o /tmp/gb_$v > /tmp/gb_$v.log 2>&1 &
done
source bench/gpu/device_run.sh "$OUT" r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test
wait
for v in g0 g1; do [ -x /tmp/gb_$v ] || { echo "$v: build failed"; tail -3 /tmp/gb_$v.log; }; done
suite gpu_kernels_test
grep -c "streaming" $OUT/gpu_kernels_test.log
suite gpu_model_test
suite gpu_engine_test
suite gpu_sampling_test
summ() { grep -E '^(READ|STEP)|GEMV.*M=1 |CUBLAS.*M=1 ' $1 | sed -E 's/ (N|K|bytes)=[^ ]+//g'; }
timeout 60 /tmp/gb_g0 --format bf16s > $OUT/gemv-g0-bf16s.log 2>&1; summ $OUT/gemv-g0-bf16s.log
timeout 60 /tmp/gb_g1 --format bf16s > $OUT/gemv-g1-bf16s.log 2>&1; summ $OUT/gemv-g1-bf16s.log
timeout 60 /tmp/gb_g1 --format bf16 --no-cublas > $OUT/gemv-g1-bf16.log 2>&1; summ $OUT/gemv-g1-bf16.log
timeout 90 /tmp/gb_g0 --format bf16 > $OUT/gemv-g0-bf16.log 2>&1; summ $OUT/gemv-g0-bf16.log
echo "== gemv done $(( $(date +%s) - t0 )) s"
for s in false true false true; do
  bench b1-stream-$s --prompt-lens 128 --reps 1 --decode-steps 64 --batch-sizes 1 --contexts 128,16384 --gemv-stream=$s
done
bench b2-8-stream --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 2,4,8 --contexts 128 --gemv-stream --gemv-max-rows 8
bench b2-8-cublas --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 2,4,8 --contexts 128
cuobjdump -sass /tmp/gb_g0 | gzip > $OUT/sass-g0.txt.gz; ls -la $OUT/sass-g0.txt.gz
echo "== end $(( $(date +%s) - t0 )) s"
