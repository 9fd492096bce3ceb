#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite (ctest, then the
# consumer projects through find_package and add_subdirectory). Exits non-zero on any failure.
#   ./scripts/test.sh            everything
#   BUILD_DIR=... ./scripts/test.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/deps.sh
ensure_packages "${SEQGEN_BUILD_PACKAGES[@]}" "${SEQGEN_TEST_PACKAGES[@]}"

jobs=$(nproc)
build=${BUILD_DIR:-$root/build/test}
start=$(date +%s)

echo "== configure and build ($build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSEQGEN_BUILD_TESTS=ON -DSEQGEN_BUILD_EXAMPLES=ON \
  -DSEQGEN_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j "$jobs"

echo "== unit tests"
(cd "$build" && ctest -j "$jobs" --output-on-failure --timeout 300)

echo "== consumer through find_package after cmake --install"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S tests/consumer -B "$tmp/package" -DSEQGEN_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/package" -j "$jobs" >/dev/null
"$tmp/package/consumer"

echo "== consumer through pkg-config"
PKG_CONFIG_PATH="$tmp/prefix/share/pkgconfig" pkg-config --exists seqgen
g++ -O1 tests/consumer/main.cpp $(PKG_CONFIG_PATH="$tmp/prefix/share/pkgconfig" pkg-config --cflags seqgen) -o "$tmp/pc_consumer"
"$tmp/pc_consumer"

echo "== consumer through add_subdirectory"
cmake -S tests/consumer -B "$tmp/subdir" -DSEQGEN_CONSUMER_MODE=subdirectory -DSEQGEN_SOURCE_DIR="$root" >/dev/null
cmake --build "$tmp/subdir" -j "$jobs" >/dev/null
"$tmp/subdir/consumer"

echo "== all tests passed in $(( $(date +%s) - start )) s"
