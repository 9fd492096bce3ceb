#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite. Exits non-zero on any
# failure.
#   1. release build, ctest (unit tests, CLI, crash-safety and hostile-input tests, no-allocation test,
#      data-parallel training under mpirun -np 2 and -np 3: tests/mpi/mpi_test.sh)
#   2. the consumer projects through find_package, pkg-config and add_subdirectory, and the README's
#      program (built by them) run on a model trained and exported here
#   3. the asan preset (clang, AddressSanitizer + UndefinedBehaviorSanitizer, -O1, Eigen's
#      assertions on): the unit tests of SANITIZED_TOPICS below, the CLI and hostile-input scripts
#   4. the tsan preset (clang, ThreadSanitizer, LLVM's libomp with its Archer tool so that OpenMP's
#      barriers are understood): the unit tests of THREADED_TOPICS below, on two threads
#   5. every libFuzzer target for SEQGEN_FUZZ_SECONDS seconds (default 10), see scripts/fuzz.sh
#      (its program is built while steps 3 and 4 run: on two cores their builds leave one idle at times)
#   ./scripts/test.sh                               everything
#   ./scripts/test.sh --quick                       step 1 only: the day-to-day check
#   SEQGEN_SKIP_SANITIZERS=1 SEQGEN_FUZZ_SECONDS=0 ./scripts/test.sh   steps 1 and 2 only
#   BUILD_DIR=... ./scripts/test.sh
set -euo pipefail
quick=
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/deps.sh
ensure_packages "${SEQGEN_BUILD_PACKAGES[@]}" "${SEQGEN_TEST_PACKAGES[@]}"
ensure_packages "${SEQGEN_MPI_PACKAGES[@]}" ||
  echo "seqgen: OpenMPI is missing: the data-parallel test (mpi_data_parallel) will be SKIPPED"

jobs=$(nproc)
build=${BUILD_DIR:-$root/build/test}
start=$(date +%s)
# A step's heading, with the seconds since the start (where the time goes).
step() { echo "== [$(( $(date +%s) - start )) s] $*"; }

# Ninja for a new build folder: it keeps both cores busy across targets.
generator=()
[ -f "$build/CMakeCache.txt" ] || generator=(-G Ninja)

step "configure and build ($build)"
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSEQGEN_BUILD_TESTS=ON -DSEQGEN_BUILD_EXAMPLES=ON \
  -DSEQGEN_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j "$jobs"

# Threads that sleep rather than spin while they wait: on a shared or oversubscribed machine a
# spinning OpenMP barrier can make a two-thread test a hundred times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

step "unit tests"
(cd "$build" && ctest -j "$jobs" --output-on-failure --timeout 300)

if [ -n "$quick" ]; then
  echo "== quick: release build and ctest passed in $(( $(date +%s) - start )) s (the consumers, sanitizers and fuzzing were not run)"
  exit 0
fi

step "consumer through find_package after cmake --install"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S tests/consumer -B "$tmp/package" -DSEQGEN_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/package" -j "$jobs" >/dev/null
package_says=$("$tmp/package/consumer")
echo "$package_says"
bash tests/consumer/run_readme_program.sh "$tmp/package/readme_program" "$build/examples/train" "$build/examples/export"
# seqgen::mpi from the installed package (the component mpi), where seqgen was built with MPI.
mpirun_flags=(--oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpirun_flags+=(--allow-run-as-root)
if [ -x "$tmp/package/consumer_mpi" ]; then
  OMP_NUM_THREADS=1 mpiexec "${mpirun_flags[@]}" "$tmp/package/consumer_mpi"
else
  echo "SKIPPED: consumer_mpi (seqgen::mpi not installed: MPI not found)"
fi

step "consumer through pkg-config"
PKG_CONFIG_PATH="$tmp/prefix/share/pkgconfig" pkg-config --exists seqgen
g++ -O1 tests/consumer/main.cpp $(PKG_CONFIG_PATH="$tmp/prefix/share/pkgconfig" pkg-config --cflags --libs seqgen) \
  -o "$tmp/pc_consumer"
pc_says=$("$tmp/pc_consumer")
echo "$pc_says"
# the same seqgen through both: OpenMP on in one means on in the other
if [ "${pc_says##*OpenMP }" != "${package_says##*OpenMP }" ]; then
  echo "pkg-config consumer has OpenMP ${pc_says##*OpenMP }, the find_package one ${package_says##*OpenMP }"
  exit 1
fi

step "consumer through add_subdirectory"
cmake -S tests/consumer -B "$tmp/subdir" -DSEQGEN_CONSUMER_MODE=subdirectory -DSEQGEN_SOURCE_DIR="$root" >/dev/null
cmake --build "$tmp/subdir" -j "$jobs" >/dev/null
"$tmp/subdir/consumer"
if [ -x "$tmp/subdir/consumer_mpi" ]; then OMP_NUM_THREADS=1 mpiexec "${mpirun_flags[@]}" "$tmp/subdir/consumer_mpi"; fi
bash tests/consumer/run_readme_program.sh "$tmp/subdir/readme_program" "$build/examples/train" "$build/examples/export"

# The sanitized unit tests: the code that handles outside bytes, raw indices and threads (files,
# tokens, matrix slices, the decoders' packed weights and caches, the trainer's saves). The layer and model
# tests are arithmetic through Eigen, checked in release; every model's forward, backward and
# decoding also runs sanitized in the fuzz targets of step 5.
SANITIZED_TOPICS="attention;flash_attention;checkpoint;dataset;decoder;gemm;parallel;pretrained;sampler;tokenizer;trainer"

fuzz_seconds=${SEQGEN_FUZZ_SECONDS:-10}
fuzz_build=
if [ "$fuzz_seconds" -gt 0 ]; then
  # Installed first, the sanitizers' too: two apt-get at once would fight over dpkg's lock, and
  # the compiler must not change under the build.
  ensure_packages "${SEQGEN_FUZZ_PACKAGES[@]}"
  [ -n "${SEQGEN_SKIP_SANITIZERS:-}" ] || ensure_packages "${SEQGEN_SANITIZER_PACKAGES[@]}"
  mkdir -p build
  ./scripts/fuzz.sh --build > build/fuzz_build.log 2>&1 &
  fuzz_build=$!
  # A failure in the steps between must not leave the build running. set -e holds in the trap too,
  # so a kill of a build that already ended must not fail it.
  trap 'rc=$?; rm -rf "$tmp"; pkill -P "$fuzz_build" 2>/dev/null || true; kill "$fuzz_build" 2>/dev/null || true; exit $rc' EXIT
fi

if [ -z "${SEQGEN_SKIP_SANITIZERS:-}" ]; then
  step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (asan preset)"
  ensure_packages "${SEQGEN_SANITIZER_PACKAGES[@]}"
  # A folder configured by an older version of this script (another generator or compiler) is
  # configured again from scratch.
  if [ -f build/asan/CMakeCache.txt ] && ! grep -q '^CMAKE_CXX_COMPILER:.*clang++-14' build/asan/CMakeCache.txt; then
    rm -rf build/asan
  fi
  # The programs at -O0 (SEQGEN_EXAMPLE_FLAGS): a third of -O1's build time, and the scripts
  # that run them train only a few steps of tiny models.
  cmake --preset asan -DSEQGEN_TEST_TOPICS="$SANITIZED_TOPICS" -DSEQGEN_USE_MPI=OFF -DSEQGEN_EXAMPLE_FLAGS=-O0 >/dev/null
  cmake --build build/asan -j "$jobs" --target seqgen_tests train generate export
  # Not the no-allocation test (it replaces malloc, as ASan does), the crash-safety script (it
  # kills train at random moments, minutes when sanitized; its save and resume code runs here in
  # the trainer tests and the hostile-input script) nor the memory estimate (ASan's shadow memory
  # is not the program's), nor the GPT-2 encoder test (npm and node; its ids are checked in
  # release, and the bpe fuzz target runs the encoder sanitized), nor gpt2_files (the readers run
  # sanitized here through the programs, gpt2_cli, and in the gpt2_llmc and gpt2_safetensors
  # fuzz targets).
  (cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest -j "$jobs" --output-on-failure --timeout 900 \
      -E "no_alloc_training_step|crash_safety|memory_estimate|gpt2_encoder|gpt2_files")

  # Every test that runs thread teams: GEMM slices, attention per (b, h), the recurrent layers'
  # sequence shares, the decoders' barrier-synchronised passes, whole training steps.
  THREADED_TOPICS="attention;decoder;determinism;flash_attention;gemm;parallel;recurrent;transformer_block"
  step "threaded unit tests under ThreadSanitizer (tsan preset)"
  archer=/usr/lib/llvm-14/lib/libarcher.so  # from libomp-14-dev
  [ -f "$archer" ] || { echo "ThreadSanitizer needs $archer (libomp-14-dev)"; exit 1; }
  cmake --preset tsan -DSEQGEN_TEST_TOPICS="$THREADED_TOPICS" -DSEQGEN_USE_MPI=OFF >/dev/null
  cmake --build build/tsan -j "$jobs" --target seqgen_tests
  OMP_NUM_THREADS=2 OMP_TOOL_LIBRARIES="$archer" TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
    build/tsan/tests/seqgen_tests
fi

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzzing, $fuzz_seconds s per target"
  wait "$fuzz_build" || { cat build/fuzz_build.log; exit 1; }
  ./scripts/fuzz.sh "$fuzz_seconds"
fi

echo "== all tests passed in $(( $(date +%s) - start )) s"
