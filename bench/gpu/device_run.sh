# Sourced by the device-run scripts under bench/gpu/results/: the GPU machine's environment,
# a Release build of named targets into /tmp/b, and helpers that run a GPU test suite or a
# gpu_model_bench pass under the device tool's 600 s limit. Usage:
#   source bench/gpu/device_run.sh "$OUT" target...
# Then: suite NAME [gtest args]   (log $OUT/NAME.log; one line of its verdict)
#       bench LABEL [gpu_model_bench args]   (RESULT lines into $OUT/bench.log)
# $M is a config-only random-weight r1-distill-qwen-1.5b checkpoint (when r1-mkmodel is built).
OUT=${1:?usage: source bench/gpu/device_run.sh OUT target...}
shift
set -uo pipefail
source .device/setup.sh .device/debs >/dev/null
t0=$(date +%s)
B=/tmp/b/bin
M=/tmp/m15c
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/bench.log
echo "tree: $(git rev-parse --short HEAD), changed: $(git diff --name-only HEAD | tr '\n' ' ')" | tee -a $OUT/bench.log
cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA_ARCHITECTURES=90 $DEVICE_CMAKE_ARGS >$OUT/cmake.log 2>&1 ||
  { tail -20 $OUT/cmake.log; exit 1; }
# -k 0: a target that fails to build does not stop the others (its suite then reports missing).
cmake --build /tmp/b --target "$@" -j16 -- -k 0 >$OUT/build.log 2>&1 || grep -B2 -A12 -m5 error $OUT/build.log
echo "built in $(( $(date +%s) - t0 )) s"
[ -x $B/r1-mkmodel ] && $B/r1-mkmodel --preset r1-distill-qwen-1.5b --config-only --out $M >/dev/null

suite() {
  local t=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 500 ] || { echo "skipped $t (time)"; return; }
  [ -x /tmp/b/tests/$t ] || { echo "$t: not built"; return; }
  R1_BIN_DIR=$B timeout 150 /tmp/b/tests/$t "$@" > $OUT/$t.log 2>&1
  echo "$t: $(grep -E '^\[ *(PASSED|FAILED) ' $OUT/$t.log | tr '\n' ' ')"
  grep -E "Failure" -A4 $OUT/$t.log | head -12
}

bench() {
  local label=$1; shift
  [ $(( $(date +%s) - t0 )) -lt 520 ] || { echo "skipped $label (time)"; return; }
  timeout 100 $B/gpu_model_bench --model $M --random-weights --label $label "$@" 2>&1 |
    grep -E "^RESULT|rror" | tee -a $OUT/bench.log
}
