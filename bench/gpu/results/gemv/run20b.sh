#!/bin/bash
# Device run 20b (2026-12-03), on run 20's machine right after it: gemv_bench over the kernels.cu
# variants of variants.sh (one pass; cuBLAS's and cuBLASLt's peer lines in v0's).
OUT=$1
bash bench/gpu/results/gemv/variants.sh /tmp/var
LIB="-lcublas -lcublasLt"
for v in v0 v1 v2 v3 v4 v5 v6; do
  nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu /tmp/var/$v.cu $LIB -o /tmp/gb_$v > /tmp/build_$v.log 2>&1 &
done
wait
for v in v0 v1 v2 v3 v4 v5 v6; do [ -x /tmp/gb_$v ] || { echo "$v: build failed"; tail -3 /tmp/build_$v.log; }; done
for v in v0 v1 v2 v3 v4 v5 v6; do
  timeout 100 /tmp/gb_$v $( [ $v = v0 ] && echo --lt 2,4,8,16,64,256 || echo --no-cublas ) >> $OUT/gemv-$v.log 2>&1
  echo "$v: $(grep -E '^STEP' $OUT/gemv-$v.log | tail -12 | awk '{print $2, $3, $5}' | tr '\n' ' ')"
done
