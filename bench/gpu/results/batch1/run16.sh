#!/bin/bash
# Device run 16 (issue 16): the tensor-core GEMV with warp-local staging and even rounds. Build;
# all GPU tests; bench/gpu/run.sh at batch 1-256 (cuBLAS and the compiled PyTorch peer at 1-8);
# the CUDA-core GEMV at batch 1; an ncu profile of one batch-1 step.
OUT=${1:-$OUT}
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 || { tail -20 $OUT/cmake.log; exit 1; }
cmake --build /tmp/b --target r1-mkmodel r1-generate gpu_model_bench gpu_kernels_test gpu_model_test gpu_engine_test -j16 >$OUT/build.log 2>&1 || { grep -B2 -A12 -m3 error $OUT/build.log; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
B=/tmp/b/bin; M=/tmp/m15
[ -f $M/config.json ] || $B/r1-mkmodel --preset r1-distill-qwen-1.5b --out $M --tokenizer .cache/tokenizer/tokenizer.json | tail -1
fail=0
for t in gpu_kernels_test gpu_model_test gpu_engine_test; do
  timeout 200 /tmp/b/tests/$t > $OUT/$t.log 2>&1 || fail=1
  grep -E "^\[ *(FAILED|PASSED|SKIPPED) |Failure" $OUT/$t.log | head -8
done
[ $fail = 0 ] || { grep -B3 -A8 Failure $OUT/gpu_kernels_test.log | head -40; exit 1; }
SKIP_BUILD=1 HF=0 EAGER_BATCHES=1 PEER_TIMEOUT=220 bash bench/gpu/run.sh $OUT 2>&1 | tail -45
timeout 60 $B/gpu_model_bench --model $M --label r1serve-cudacore --gemv-tensor-cores=false --batch-sizes 1 --prompt-lens 16 --reps 1 2>&1 | grep -E "^RESULT.*decode" | tee -a $OUT/bench.log
[ $(( $(date +%s) - t0 )) -lt 520 ] && timeout 60 ncu --graph-profiling node --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum \
  --csv --page raw --log-file $OUT/ncu-b1.csv $B/gpu_model_bench --model $M \
  --prompt-lens 16 --reps 1 --batch-sizes 1 --contexts 128 --decode-steps 2 >/dev/null 2>&1
python3 bench/gpu/ncu_summary.py $OUT/ncu-b1.csv 9 2>&1 | tail -17
echo "== end $(date +%T) $(( $(date +%s) - t0 )) s"
