#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite. Exits non-zero on any
# failure.
#   1. release build, ctest (unit tests, CLI, crash-safety and hostile-input tests, no-allocation test)
#   2. the consumer projects through find_package, pkg-config and add_subdirectory
#   3. the same ctest suite built with AddressSanitizer + UndefinedBehaviorSanitizer (at -O1; the asan
#      preset's flags), except the no-allocation test, which replaces malloc as ASan does, and the
#      crash-safety script, which kills train at random moments and takes minutes when sanitized
#   4. every libFuzzer target for SEQGEN_FUZZ_SECONDS seconds (default 60), see scripts/fuzz.sh
#   ./scripts/test.sh                               everything
#   SEQGEN_SKIP_SANITIZERS=1 SEQGEN_FUZZ_SECONDS=0 ./scripts/test.sh   steps 1 and 2 only
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

# Threads that sleep rather than spin while they wait: on a shared or oversubscribed machine a
# spinning OpenMP barrier can make a two-thread test a hundred times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

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

if [ -z "${SEQGEN_SKIP_SANITIZERS:-}" ]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  asan=${ASAN_BUILD_DIR:-$root/build/asan}
  # -O1 -g1: compiles in about half the time of -O2 -g and still names the line of any report.
  sanitize="-O1 -g1 -DNDEBUG -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="$sanitize" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DSEQGEN_BUILD_TESTS=ON -DSEQGEN_BUILD_EXAMPLES=ON \
    -DSEQGEN_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$asan" -j "$jobs" --target seqgen_tests train generate
  (cd "$asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest -j "$jobs" --output-on-failure --timeout 900 -E "no_alloc_training_step|crash_safety")
fi

fuzz_seconds=${SEQGEN_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "== fuzzing, $fuzz_seconds s per target"
  ./scripts/fuzz.sh "$fuzz_seconds"
fi

echo "== all tests passed in $(( $(date +%s) - start )) s"
