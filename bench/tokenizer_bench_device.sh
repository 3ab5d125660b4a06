#!/bin/bash
# One GPU-machine run for the tokenizer (issue 3): builds r1-tokenize and tokenizer_bench,
# writes the demo DeepSeek-R1-Distill tokenizer files, makes the Hugging Face reference
# fixtures, and runs both benchmarks (ours and HF tokenizers) on the same machine.
#   bash bench/tokenizer_bench_device.sh      (from the project root; results go to $OUT)
# Needs .cache/tokenizer (the npm Qwen tokenizer) and, on the GPU machine, .device.
set -uo pipefail
OUT=${OUT:-/tmp/tokenizer_out}
mkdir -p "$OUT"
B=/tmp/r1tok-build
if [ -f .device/setup.sh ]; then source .device/setup.sh > "$OUT/setup.log" 2>&1; fi
SKIP="proto;gateway;loadtest;worker/model;worker/engine;worker/service;tools/mkmodel;tools/generate;tests;deploy"
built=0
if timeout 150 cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release ${DEVICE_CMAKE_ARGS:-} \
     "-DR1_SKIP_DIRS=$SKIP" > "$OUT/build.log" 2>&1 &&
   cmake --build $B --target r1-tokenize tokenizer_bench >> "$OUT/build.log" 2>&1; then
  built=1; echo "built with the main CMakeLists"
else
  echo "main build failed (see build.log); trying bench/tokenizer_bench_standalone"
  B=/tmp/r1tok-standalone
  if cmake -S bench/tokenizer_bench_standalone -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release \
       >> "$OUT/build.log" 2>&1 && cmake --build $B >> "$OUT/build.log" 2>&1; then
    built=1; echo "built standalone"
  fi
fi
tail -3 "$OUT/build.log"
[ $built = 1 ] || { echo "build failed"; tail -40 "$OUT/build.log"; }
DEMO=/tmp/r1tok-demo
mkdir -p $DEMO
if [ $built = 1 ]; then
  $B/bin/r1-tokenize --tokenizer .cache/tokenizer/tokenizer.json --write-demo-dir $DEMO || echo "demo files failed"
fi
DEMO_ARG=""
[ -s $DEMO/tokenizer.json ] && DEMO_ARG="--demo $DEMO"
python3 -c 'import tokenizers, transformers; print("tokenizers", tokenizers.__version__, "transformers", transformers.__version__)'
python3 tests/fixtures/make_tokenizer_fixtures.py --qwen .cache/tokenizer/tokenizer.json $DEMO_ARG \
  --out "$OUT" --bench-text /tmp/r1tok-bench.txt 2>&1 | tail -20
lscpu | grep -E "Model name|^CPU\(s\)" > "$OUT/bench.txt"
python3 bench/tokenizer_bench_hf.py --tokenizer .cache/tokenizer/tokenizer.json \
  --text /tmp/r1tok-bench.txt >> "$OUT/bench.txt" 2>&1
if [ $built = 1 ]; then
  $B/bin/tokenizer_bench --tokenizer .cache/tokenizer/tokenizer.json --text /tmp/r1tok-bench.txt \
    >> "$OUT/bench.txt" 2>&1
fi
cat "$OUT/bench.txt"
ls -la "$OUT"
