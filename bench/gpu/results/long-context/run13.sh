#!/bin/bash
# Long context (issue 19) and batch 1 (issue 16), device run 13 (2026-12-03): RoPE and the KV
# write fused into the decode attention kernel (--attn-rope, default true). Build, the kernel
# tests (the fused kernel against RopeKvWrite + PagedAttention and ATen's rotate-half), the
# decode grid with and without the fusion, alternating, bf16 and FP8 caches, then the other
# GPU suites.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
# Only this change's files differ from HEAD here (another session edits CPU files meanwhile).
mine="worker/model/cuda/kernels.cu worker/model/cuda/kernels.h worker/model/kernel_tuning.cc worker/model/kernel_tuning.h worker/model/qwen2_cuda.cc tests/gpu/gpu_kernels_test.cc"
for f in $(git diff --name-only HEAD); do case " $mine " in *" $f "*) ;; *) git checkout -q HEAD -- "$f";; esac; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
echo "tree: $(git rev-parse --short HEAD), changed: $(git diff --name-only HEAD | tr '\n' ' ')" | tee -a $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test gpu_sampling_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m5 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15c
$B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null
suite() {
  local t=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 500 ] || { echo "skipped $t (time)"; return; }
  R1_BIN_DIR=/tmp/b/bin timeout 150 /tmp/b/tests/$t "$@" > $OUT/$t.log 2>&1
  echo "$t: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/$t.log | tr '\n' ' ')"
  grep -E "Failure" -A4 $OUT/$t.log | head -12
}
bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 520 ] || { echo "skipped $label (time)"; return; }
  timeout 100 $B/gpu_model_bench --model $M --random-weights --label $label --prompt-lens 128 --reps 1 --decode-steps 32 "$@" 2>&1 | grep -E "^RESULT.*decode|rror" | tee -a $OUT/bench.log
}
suite gpu_kernels_test
grep -c "Fused" $OUT/gpu_kernels_test.log
for pass in 1 2 3; do
  for r in true false; do bench rope-$r-p$pass --attn-rope=$r --batch-sizes 1,2,4,8,16,64,256 --contexts 128,4096,16384; done
done
for r in true false; do bench fp8-rope-$r --attn-rope=$r --kv-cache-dtype fp8 --batch-sizes 1,16,64 --contexts 128,4096,16384; done
suite gpu_model_test
suite gpu_engine_test
suite gpu_sampling_test
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
