#!/bin/bash
# Device run 20 (2026-12-03). While the tree builds (8c10e87 with 2026-12-03-run20-v5-staging.diff
# applied: its GEMV stages x with eight loads in flight, "v5"): gemv_bench over the kernels.cu
# variants of variants.sh (nvcc alone; they failed to link here, without -lcublasLt then, and
# run20b.sh ran them on the same machine right after). Then decode attention's key splits and
# stages at batch 1 and 16 over 4k-32k keys (2026-12-03-run20-attn-sweep-v5.log), batch 1-8 with
# the GEMV at 2-8 rows against cuBLAS there, and gpu_kernels_test (17 passed).
OUT=${1:-$OUT}
cd "$(dirname "$0")/../../../.."
T0=$(date +%s)
BD=$PWD/build-device
( source .device/setup.sh .device/debs >/dev/null
  cmake -S . -B $BD -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 &&
  nice cmake --build $BD --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test -j12 >$OUT/build.log 2>&1
  echo "tree built: rc $? at $(( $(date +%s) - T0 )) s" ) &
BUILD=$!
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "tree: $(git rev-parse --short HEAD), changed: $(git diff --name-only HEAD | tr '\n' ' ')"
bash bench/gpu/results/gemv/variants.sh /tmp/var
LIB="-lcublas -lcublasLt"
echo 'int main(){}' > /tmp/t.cu; nvcc /tmp/t.cu -lcublas -lcublasLt -o /tmp/t 2>/dev/null || LIB=-DGEMV_BENCH_NO_CUBLAS
for v in v0 v1 v2 v3 v4 v5 v6; do
  nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I. bench/gpu/gemv_bench.cu /tmp/var/$v.cu $LIB \
    -o /tmp/gb_$v > /tmp/build_$v.log 2>&1 &
done
for j in $(jobs -p); do [ $j = $BUILD ] || wait $j; done
echo "variants built at $(( $(date +%s) - T0 )) s"
for v in v0 v1 v2 v3 v4 v5 v6; do [ -x /tmp/gb_$v ] || { echo "$v: build failed"; tail -5 /tmp/build_$v.log; }; done
for v in v0 v1 v2 v3 v4 v5 v6; do
  timeout 100 /tmp/gb_$v $( [ $v = v0 ] && echo --lt 2,4,8,16,64,256 || echo --no-cublas ) >> $OUT/gemv-$v.log 2>&1
  echo "$v: $(grep -E '^STEP' $OUT/gemv-$v.log | tail -12 | awk '{print $2, $3, $5}' | tr '\n' ' ')"
done
echo "micro done at $(( $(date +%s) - T0 )) s"
wait $BUILD
source .device/setup.sh .device/debs >/dev/null
B=$BD/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
bench() {  # LABEL args...
  local label=$1; shift
  [ $(( $(date +%s) - T0 )) -lt 540 ] || { echo "skipped $label (time)"; return; }
  timeout 60 $B/gpu_model_bench --model $M --random-weights --label $label --prompt-lens 128 --reps 1 "$@" 2>&1 |
    grep -E "^RESULT|rror" >> $OUT/bench.log
  echo "$label: $(grep "^RESULT $label decode" $OUT/bench.log | awk '{print $5 "x" $7 ": " $10 " ms " $14 " tok/s"}' | paste -sd';')"
}
for st in 2 3; do
  for sp in 0 16 32 64 128 256; do
    bench "st${st}sp${sp}" --attn-stages $st --attn-splits $sp --decode-steps 32 --batch-sizes 1,16 --contexts 4096,16384,32768
  done
done
for rows in 1 8; do bench rows$rows --gemv-max-rows $rows --decode-steps 64 --batch-sizes 1,2,4,8 --contexts 128; done
R1_BIN_DIR=$B timeout 100 $BD/tests/gpu_kernels_test > $OUT/gpu_kernels_test.log 2>&1
echo "gpu_kernels_test: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/gpu_kernels_test.log | tr '\n' ' ')"
grep -E "Failure" -A4 $OUT/gpu_kernels_test.log | head -12
echo "== end $(( $(date +%s) - T0 )) s"
