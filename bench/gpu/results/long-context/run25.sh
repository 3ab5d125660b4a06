#!/bin/bash
# Device run 25 (2026-12-03): (1) decode attention's split count from a cost model (waves of
# resident blocks; PagedAttentionSplits) against the rule before (commit bda7ed5's kernels.cu)
# in attention_bench, with fixed counts beside both; (2) RoPE and the K/V write in the qkv GEMV's
# epilogue (--gemv-rope) against the separate kernel, in the model at batch 1, bf16 and FP8,
# alternating; every GPU suite; the decode grid, and some cells at the old rule's split counts
# (--attn-splits) for a same-run comparison.
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
mkdir -p /tmp/av
git show bda7ed5:worker/model/cuda/kernels.cu > /tmp/av/old.cu  # failed in the run: the device's copy of the tree has no commit after a29d45b (ab_old not built)
source .device/setup.sh .device/debs >/dev/null
for v in new old; do
  src=worker/model/cuda/kernels.cu; [ $v = old ] && src=/tmp/av/old.cu
  nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/attention_bench.cu $src \
    -o /tmp/ab_$v > /tmp/ab_$v.log 2>&1 &
done
source bench/gpu/device_run.sh "$OUT" r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test
wait
for v in new old; do [ -x /tmp/ab_$v ] || { echo "ab_$v: build failed"; tail -3 /tmp/ab_$v.log; }; done
suite gpu_kernels_test
grep -E "GemvRopeKv" $OUT/gpu_kernels_test.log | head -3
suite gpu_model_test
suite gpu_engine_test
suite gpu_sampling_test
ab() {  # label, binary, args
  local l=$1 b=$2; shift 2
  timeout 100 /tmp/ab_$b "$@" 2>&1 | grep -E "^(READ|ATTN)" | sed -E 's/ (bucket|stages|kv_MB|GBps)=[^ ]+//g; s/us_per_layer=/us=/' > $OUT/attn-$l.log
}
ab small-new new --batches 1,2,4,8,16 --contexts 4096,16384,32768 --splits 8,16,32,64,128
ab small-old old --batches 1,2,4,8,16 --contexts 4096,16384,32768 --splits 8
ab large-new new --batches 32,64 --contexts 4096,16384,32768 --splits 1,2,3,4,6,8,16
ab large-old old --batches 32,64 --contexts 4096,16384,32768 --splits 8
ab huge-new new --batches 128,256 --contexts 4096,8192 --splits 1,2,3,4,8
ab huge-old old --batches 128,256 --contexts 4096,8192 --splits 8
echo "== attention done $(( $(date +%s) - t0 )) s"
grep -h "(rule)" $OUT/attn-*-new.log $OUT/attn-*-old.log | sort -t= -k2,2n -k3,3n | head -60
for p in 1 2; do for r in false true; do
  bench b1-rope-$r-p$p --prompt-lens 128 --reps 1 --decode-steps 64 --batch-sizes 1 --contexts 128,16384 --gemv-rope=$r
done; done
for r in false true; do
  bench fp8-rope-$r --quantization fp8 --prompt-lens 128 --reps 1 --decode-steps 64 --batch-sizes 1,4 --contexts 128 --gemv-rope=$r
done
bench small --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4,8 --contexts 128,4096,16384,32768
bench large --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 16,64 --contexts 128,4096,16384,32768
# The rule before's counts for the model's buckets (context + 160 keys: 8k, 32k, 64k).
bench old-16-16k --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 16 --contexts 16384 --attn-splits 16
bench old-16-32k --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 16 --contexts 32768 --attn-splits 32
bench old-64-4k --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 64 --contexts 4096 --attn-splits 4
bench old-64-16k --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 64 --contexts 16384 --attn-splits 16
bench old-8-4k --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 8 --contexts 4096 --attn-splits 13
bench old-1-32k --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1 --contexts 16384,32768 --attn-splits 99
echo "== end $(( $(date +%s) - t0 )) s"
cd $OUT && tar czf logs.tgz *.log && rm -f *.log
