#!/usr/bin/env bash
# Builds a fuzz target with clang and runs it for SECONDS (default 20) from its seed corpus:
# request_parser_fuzz (the OpenAI request parser, seeds in corpus/) or http_session_fuzz (the
# HTTP/1.1 session layer, seeds in http_corpus/, tokens in http.dict). Exits 77 (skipped) when clang cannot build
# libFuzzer targets.
#   tests/fuzz/run_fuzz.sh BUILD_DIR [SECONDS] [TARGET]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run_fuzz.sh BUILD_DIR [SECONDS] [TARGET]}"
seconds="${2:-20}"
target="${3:-request_parser_fuzz}"
case "$target" in
  request_parser_fuzz) seeds="$here/corpus"; max_len=4096; dict=() ;;
  http_session_fuzz) seeds="$here/http_corpus"; max_len=8192; dict=(-dict="$here/http.dict") ;;
  *) echo "run_fuzz: unknown target $target"; exit 2 ;;
esac
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
cmake --build "$build" --target "$target" >/dev/null
corpus="$build/corpus-$target"
mkdir -p "$corpus"
cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
# -error_exitcode=1: libFuzzer's default for a finding is 77, which ctest reads as "skipped".
log="$build/$target.log"
status=0
"$build/$target" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -error_exitcode=1 -artifact_prefix="$build/" \
  ${dict[@]+"${dict[@]}"} "$corpus" > "$log" 2>&1 || status=$?
if [ "$status" != 0 ]; then
  echo "run_fuzz: $target failed (exit $status); what it found (full log: $log):"
  grep -E "^$target:|ERROR|SUMMARY|^artifact_prefix|Test unit written" "$log" | head -20
fi
tail -12 "$log"
exit "$status"
