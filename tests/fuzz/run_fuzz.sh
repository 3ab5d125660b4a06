#!/usr/bin/env bash
# Builds the request-parser fuzz target with clang and runs it for SECONDS (default 20) from
# the seed corpus. Exits 77 (skipped) when clang cannot build libFuzzer targets.
#   tests/fuzz/run_fuzz.sh BUILD_DIR [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run_fuzz.sh BUILD_DIR [SECONDS]}"
seconds="${2:-20}"
CXX="${FUZZ_CXX:-clang++}"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe/p.cc"
if ! command -v "$CXX" >/dev/null || ! "$CXX" -fsanitize=fuzzer "$probe/p.cc" -o "$probe/p" 2>/dev/null; then
  echo "run_fuzz: $CXX cannot build libFuzzer targets; skipped"
  exit 77
fi
cmake -S "$here/standalone" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" >/dev/null
corpus="$build/corpus"
mkdir -p "$corpus"
cp -n "$here"/corpus/* "$corpus"/ 2>/dev/null || true
"$build/request_parser_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -25
