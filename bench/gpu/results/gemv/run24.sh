#!/bin/bash
# Device run 24 (2026-12-03): the tensor-core GEMV's ring reloaded a half at a time and its K
# slices chosen for the fewest steps a warp (k0, the tree), against k1 (the half-at-a-time ring
# with the slice rule before) and k2 (the tree with a quarter of the ring reloaded at a time), in
# gemv_bench; every GPU suite on the tree; the decode grid and the weight formats at batch 1.
# (The run itself took k1.cu and k2.cu from .device/var/, made by the same replacements.)
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
mkdir -p /tmp/gv
cp worker/model/cuda/kernels.cu /tmp/gv/k0.cu
git show a29d45b:worker/model/cuda/kernels.cu > /tmp/gv/before.cu
python3 - <<'PY'
t = open("/tmp/gv/k0.cu").read()
b = open("/tmp/gv/before.cu").read()
end = "  const int64_t blocks = (tiles + rounds * per_round - 1) / (rounds * per_round);"
new = t[t.index("  // K slices S: the count that gives"):t.index(end)]
old = b[b.index("  // The fewest K slices that give every resident warp a unit."):b.index(end)]
open("/tmp/gv/k1.cu", "w").write(t.replace(new, old))
half = "  constexpr int kHalf = kDepth > 1 ? kDepth / 2 : 1;  // steps reloaded together\n"
assert t.count(half) == 1
open("/tmp/gv/k2.cu", "w").write(t.replace(half, half.replace("kDepth > 1 ? kDepth / 2", "kDepth > 3 ? kDepth / 4")))
PY
source .device/setup.sh .device/debs >/dev/null
for v in k0 k1 k2; do
  nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu /tmp/gv/$v.cu \
    -lcublas -lcublasLt -o /tmp/gb_$v > /tmp/gb_$v.log 2>&1 &
done
source bench/gpu/device_run.sh "$OUT" r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test
wait
for v in k0 k1 k2; do [ -x /tmp/gb_$v ] || { echo "$v: build failed"; tail -3 /tmp/gb_$v.log; }; done
suite gpu_kernels_test
suite gpu_model_test
suite gpu_engine_test
suite gpu_sampling_test
summ() { grep -E '^(READ|STEP)|GEMV.*M=1 |CUBLAS.*M=1 ' $1 | sed -E 's/ (N|K|bytes)=[^ ]+//g'; }
for v in k1 k2; do timeout 60 /tmp/gb_$v --format bf16 --no-cublas > $OUT/gemv-$v.log 2>&1; echo "== $v"; summ $OUT/gemv-$v.log; done
timeout 150 /tmp/gb_k0 > $OUT/gemv-k0.log 2>&1; echo "== k0"; summ $OUT/gemv-k0.log
echo "== gemv done $(( $(date +%s) - t0 )) s"
bench small --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1,2,4,8 --contexts 128,4096,16384,32768
for q in fp8 int4; do
  bench q-$q --quantization $q --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 1 --contexts 128,16384
done
bench large --prompt-lens 128 --reps 1 --decode-steps 32 --batch-sizes 16,64 --contexts 128,4096,16384,32768
echo "== end $(( $(date +%s) - t0 )) s"
cd $OUT && tar czf logs.tgz *.log && rm -f *.log
