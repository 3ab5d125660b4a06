#!/bin/bash
# Device run 22 (2026-12-03): bench/gpu/attention_bench.cu (nvcc alone) on the tree as committed
# (m0), and with the split merge's variants: m1 32 loads in flight a thread instead of 16, m2 512
# threads a block (4 groups of dimensions) instead of 256, m3 both. m0 over batch 1, 16, 64 and
# 128-32k keys at the rule's splits and 1, 8, 32, 128; the variants at batch 1.
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "tree: $(git rev-parse --short HEAD), changed: $(git diff --name-only HEAD | tr '\n' ' ')"
mkdir -p /tmp/mv
K=worker/model/cuda/kernels.cu
cp $K /tmp/mv/m0.cu
sed 's/^    constexpr int kLoads = 16;$/    constexpr int kLoads = 32;/' $K > /tmp/mv/m1.cu
sed 's/^constexpr int kMergeThreads = 256;$/constexpr int kMergeThreads = 512;/' $K > /tmp/mv/m2.cu
sed 's/^constexpr int kMergeThreads = 256;$/constexpr int kMergeThreads = 512;/' /tmp/mv/m1.cu > /tmp/mv/m3.cu
for v in m1 m2 m3; do cmp -s /tmp/mv/m0.cu /tmp/mv/$v.cu && echo "$v: sed changed nothing"; done
for v in m0 m1 m2 m3; do
  nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/attention_bench.cu /tmp/mv/$v.cu \
    -o /tmp/ab_$v > /tmp/ab_$v.log 2>&1 &
done
wait
for v in m0 m1 m2 m3; do [ -x /tmp/ab_$v ] || { echo "$v: build failed"; tail -3 /tmp/ab_$v.log; }; done
timeout 120 /tmp/ab_m0 --splits 1,8,32,128 > $OUT/attention-m0.log 2>&1
grep -E "READ|ATTN" $OUT/attention-m0.log | sed -E 's/ (bucket|stages|kv_MB)=[^ ]+//g; s/us_per_layer=/us=/'
for v in m1 m2 m3 m0; do
  timeout 40 /tmp/ab_$v --batches 1 --contexts 4096,16384,32768 --splits 128 > $OUT/attention-$v-b1.log 2>&1
  echo "$v: $(grep ATTN $OUT/attention-$v-b1.log | sed -E 's/ (bucket|stages|kv_MB|GBps)=[^ ]+//g; s/^ATTN B=1 //' | tr '\n' ';')"
done
# Then, on the same warm machine (run 22b), batch 4-32 against more split counts:
#   /tmp/ab_m0 --batches 4,8,16,32 --contexts 4096,16384,32768 --splits 4,6,8,10,12,16,24,32
#   > 2026-12-03-run22-attention-m0-sweep.log
