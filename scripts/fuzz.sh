#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang-14 (-fsanitize=fuzzer,address,undefined) and runs
# each for a bounded time on a copy of its seed corpus plus its saved regressions, two at a time.
# Fails, naming the target and the crash file, on any crash, leak, sanitizer report, uncaught
# exception, out-of-memory or timeout.
#   ./scripts/fuzz.sh                 every target, SEQGEN_FUZZ_SECONDS (default 60) s each
#   ./scripts/fuzz.sh 300             every target, 300 s each
#   ./scripts/fuzz.sh 30 utf8 dataset some targets
#   FUZZ_JOBS=1 ./scripts/fuzz.sh     one target at a time
#   ./scripts/fuzz.sh --build         build the program only (scripts/test.sh, while it runs others)
# The program goes to build/fuzz/seqgen_fuzz (rebuilt when a header changed), with a link
# build/fuzz/<target> to it for each target; crash inputs to
# build/fuzz/artifacts/<target>/; the repository's corpus is never written to.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/deps.sh
ensure_packages "${SEQGEN_FUZZ_PACKAGES[@]}"

build_only=
if [ "${1:-}" = --build ]; then build_only=1; shift; fi
seconds=${1:-${SEQGEN_FUZZ_SECONDS:-60}}
shift || true
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || { echo "usage: $0 [seconds] [target...]" >&2; exit 2; }
jobs=${FUZZ_JOBS:-2}

out=build/fuzz
mkdir -p "$out"
cxx=clang++-14
flags=(-std=c++17 -O1 -gline-tables-only -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I include -I /usr/include/eigen3 $(pkg-config --cflags --libs libpcre2-8))

# One program for every target (fuzz/seqgen_fuzz.cpp), run through a link named after the target.
bin=$out/seqgen_fuzz
if [ ! -x "$bin" ] || [ -n "$(find include fuzz -newer "$bin" -name '*pp' | head -1)" ]; then
  echo "== build $bin"
  "$cxx" "${flags[@]}" fuzz/seqgen_fuzz.cpp -o "$bin.tmp" 2>"$out/build.log" || {
    echo "fuzz.sh: building the fuzz targets failed:" >&2
    cat "$out/build.log" >&2
    exit 1
  }
  mv "$bin.tmp" "$bin"
fi
[ -z "$build_only" ] || exit 0

# The targets and their longest input, from the program itself (all_targets() in fuzz/all_targets.hpp).
declare -A max_len=()
all=()
while read -r name len; do
  all+=("$name")
  max_len[$name]=$len
done < <("$bin" --list)
[ ${#all[@]} -gt 0 ] || { echo "fuzz.sh: $bin --list printed no targets" >&2; exit 1; }
if [ $# -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "fuzz.sh: no target '$t'; the targets are: ${all[*]}" >&2; exit 2; }
  done
else
  targets=("${all[@]}")
fi
for t in "${all[@]}"; do ln -sf seqgen_fuzz "$out/$t"; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs one target; leaves "<target> <execs> <cov> <ft> <result>" in $work/<target>.result.
run() {
  set +e +o pipefail  # a missing statistic must not end the job before its result is written
  local t=$1 corpus=$work/corpus/$1 artifacts=$out/artifacts/$1/ log=$out/$1.log
  mkdir -p "$corpus" "$artifacts"
  cp -r "fuzz/corpus/$t/." "$corpus/" 2>/dev/null || true
  cp -r "fuzz/regressions/$t/." "$corpus/" 2>/dev/null || true
  rm -f "$artifacts"/*
  local rc=0
  TMPDIR=$work "./$out/$t" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="${max_len[$t]}" \
    -timeout=30 -print_final_stats=1 -artifact_prefix="$artifacts" >"$log" 2>&1 || rc=$?
  local execs cov ft crash result
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  crash=$(ls "$artifacts" 2>/dev/null | head -1)
  if [ $rc -eq 0 ] && [ -z "$crash" ] && ! grep -q 'ERROR: \|runtime error:' "$log"; then
    result=ok
  else
    result="FAILED (exit $rc) input=${crash:+$artifacts$crash} log=$log"
  fi
  echo "$t ${execs:-?} ${cov:-?} ${ft:-?} $result" >"$work/$t.result"
}

echo "== run ${#targets[@]} targets for ${seconds} s each, $jobs at a time"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
  if [ -f "$work/$t.result" ]; then
    read -r name execs cov ft result <"$work/$t.result"
  else
    name=$t execs='?' cov='?' ft='?' result="FAILED (no result; see $out/$t.log)"
  fi
  printf '%-16s executions %10s  coverage %5s edges %6s features  %s\n' "$name" "$execs" "$cov" "$ft" "$result"
  [ "$result" = ok ] || failed=1
done
if [ $failed -ne 0 ]; then
  echo "fuzz.sh: FAILED. Reproduce with ./$out/<target> <input>; then add the input to fuzz/regressions/<target>/" >&2
  exit 1
fi
echo "fuzz.sh: every target ran ${seconds} s with no finding"
