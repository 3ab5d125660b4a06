#!/bin/bash
# Writes the kernels.cu variants of device run 20b for bench/gpu/gemv_bench.cu into $1, all from
# commit 8c10e87's kernels.cu (run from the project root of a clone that has that commit):
#   v0 as it was (ld.global.cs)          v1 ld.global.nc, L1 no_allocate, L2::256B prefetch
#   v2 ld.global.nc, L1 no_allocate      v3 as v1 with L2::128B      v4 as v1 with 8 loads in flight
#   v5 x staged with eight loads in flight (2026-12-03-run20-v5-staging.diff)   v6 v5 with v1's loads
# v1 is what LoadStreaming does since.
set -e
D=$1; mkdir -p $D
SRC=$D/head.cu
git show 8c10e87:worker/model/cuda/kernels.cu > $SRC
patch -s -o $D/v5.cu $SRC < "$(dirname "$0")/2026-12-03-run20-v5-staging.diff"
OLD='  return __ldcs(reinterpret_cast<const uint4*>(p));'
asm() { echo "  uint4 r; asm(\"ld.global.nc.L1::no_allocate$1.v4.u32 {%0,%1,%2,%3}, [%4];\" : \"=r\"(r.x), \"=r\"(r.y), \"=r\"(r.z), \"=r\"(r.w) : \"l\"(p)); return r;"; }
cp $SRC $D/v0.cu
python3 - "$SRC" "$D" "$OLD" "$(asm .L2::256B)" "$(asm '')" "$(asm .L2::128B)" <<'PY'
import sys
src, d, old, a256, anone, a128 = sys.argv[1:]
t = open(src).read()
assert t.count(old) == 1
open(f"{d}/v1.cu", "w").write(t.replace(old, a256))
open(f"{d}/v2.cu", "w").write(t.replace(old, anone))
open(f"{d}/v3.cu", "w").write(t.replace(old, a128))
t4 = t.replace(old, a256)
k = "constexpr int kTgLoads = 16;"
assert t4.count(k) == 1
open(f"{d}/v4.cu", "w").write(t4.replace(k, "constexpr int kTgLoads = 8;"))
t5 = open(f"{d}/v5.cu").read()
assert t5.count(old) == 1
open(f"{d}/v6.cu", "w").write(t5.replace(old, a256))
PY
