#!/usr/bin/env bash
# The README's performance figures, side by side in one sitting: the machine's FMA peak, seqgen's
# benchmarks, llm.c's CPU train_gpt2.c and PyTorch, at 1 and 2 threads, in alternating rounds.
#   ./scripts/compare_peers.sh                 two rounds; the peers from ../shared/peers
#   ROUNDS=3 PEERS=/path/to/peers ./scripts/compare_peers.sh
#   SHIELD=1 ./scripts/compare_peers.sh        in a scheduling group of its own at nice -20 (root),
#                                              so that other work on a shared machine barely competes
# Run the peers' setup first (PEERS/setup.sh: PyTorch must use OpenBLAS, not the reference BLAS).
# The seqgen benchmarks are those of scripts/bench.sh (build/bench); the output is plain text.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$root/../shared/peers}
[ -d "$peers" ] || { echo "compare_peers: no peers at $peers (set PEERS)"; exit 1; }
if [ "${SHIELD:-0}" = 1 ] && [ -z "${SEQGEN_SHIELDED:-}" ]; then
  SEQGEN_SHIELDED=1 exec setsid "$0" "$@"
fi
[ -n "${SEQGEN_SHIELDED:-}" ] && echo -20 > /proc/self/autogroup

bench=${BUILD_DIR:-$root/build/bench}
cmake -S "$root" -B "$bench" -DCMAKE_BUILD_TYPE=Release -DSEQGEN_NATIVE=ON -DSEQGEN_BUILD_BENCHMARKS=ON \
  -DSEQGEN_BUILD_TESTS=OFF -DSEQGEN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$bench" -j "$(nproc)" --target seqgen_bench >/dev/null
out=$root/build/peers
mkdir -p "$out"
gcc -O3 -march=native -fopenmp "$peers/llmc/llmc_step.c" -lm -o "$out/llmc_step" 2>/dev/null
g++ -O3 -march=native -fopenmp "$peers/fma_peak.cpp" -o "$out/fma_peak"

cases='^(TrainStep/gpt_s|TrainStep/lstm_s|Decode/gpt_s/kv_cache|Loaded/.*|SeqCost/attention/(256|2048)|SeqCost/attention_reference/(256|2048)|TrainStep/gpt2_124m|Decode/gpt2_124m|Memory/stream_copy)/'
for round in $(seq "${ROUNDS:-2}"); do
  for t in 1 2; do
    echo "== round $round, $t thread(s), $(date -u +%H:%M:%S) UTC"
    OMP_NUM_THREADS=$t "$out/fma_peak" | tail -1
    OMP_NUM_THREADS=$t "$bench/bench/seqgen_bench" --benchmark_filter="$cases" --benchmark_min_time=1 |
      grep -E '^[A-Z][A-Za-z]+/'
    if [ "$t" = 2 ]; then  # llm.c at 1 thread takes minutes at the 124M shape
      OMP_NUM_THREADS=$t "$out/llmc_step" 8 256 256 4 4 65 5 | tail -1
      OMP_NUM_THREADS=$t "$out/llmc_step" 4 64 768 12 12 50257 3 | tail -1
    fi
    /usr/bin/python3 "$peers/torch_gpt_step.py" 8 256 256 4 4 65 5 "$t" | tail -1
    /usr/bin/python3 "$peers/torch_rnn_step.py" lstm 32 128 256 2 65 5 "$t" | tail -1
    /usr/bin/python3 "$peers/torch_gpt_generate.py" 256 4 4 65 256 255 "$t" | tail -1
    /usr/bin/python3 "$peers/torch_gpt_step.py" 4 64 768 12 12 50257 3 "$t" | tail -1
  done
done
