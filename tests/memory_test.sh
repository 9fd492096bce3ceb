#!/usr/bin/env bash
# The memory budget of `train` against what a run really holds (docs/reliability.md): for models of
# each family, `train` prints "memory: estimated X MiB, peak resident Y MiB" (the estimate it checked
# against the available memory before allocating, and getrusage's peak). The estimate must cover
# the peak (X >= Y) without being far above it (X <= 1.5 Y + 32 MiB), so that a run it accepts fits
# and a run it refuses would not have. Usage: memory_test.sh <train>
set -euo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "memory_test: FAIL: $*" >&2; exit 1; }

# About 200 kB of text, so that the final evaluation reads full batches of 32 windows.
words=(the quick brown fox jumps over lazy dog and then sleeps a river runs past old mills we count stars)
for i in $(seq 8000); do
  echo "${words[i % 19]} ${words[(i * 7) % 19]} ${words[(i * 11) % 19]}, ${words[(i * 3) % 19]} ${words[(i * 13) % 19]}."
done > "$dir/text.txt"

check() {  # check <name> <train options...>
  local name=$1
  shift
  "$train" --data "$dir/text.txt" "$@" --steps 2 --eval-interval 0 --sample-tokens 0 --out "$dir/$name.ckpt" \
    > "$dir/$name.log" 2>&1 || { cat "$dir/$name.log"; fail "$name: train failed"; }
  local line est peak
  line=$(grep '^memory: ' "$dir/$name.log") || fail "$name: no memory line"
  est=$(echo "$line" | sed 's/^memory: estimated \([0-9.]*\) MiB, peak resident \([0-9.]*\) MiB$/\1/')
  peak=$(echo "$line" | sed 's/^memory: estimated \([0-9.]*\) MiB, peak resident \([0-9.]*\) MiB$/\2/')
  awk -v e="$est" -v p="$peak" 'BEGIN { exit !(e >= p && e <= 1.5 * p + 32) }' ||
    fail "$name: estimated $est MiB, peak resident $peak MiB"
  echo "memory_test: $name: estimated $est MiB, peak resident $peak MiB"
}

check gpt_s --model gpt --channels 256 --layers 4 --heads 4 -T 256 -B 8
check gpt_wide_batch --model gpt --channels 128 --layers 2 --heads 4 -T 128 -B 64 --dropout 0.1
check gpt_long --model gpt --channels 64 --layers 2 --heads 8 -T 512 -B 4 --tokenizer byte
check lstm_s --model lstm --channels 256 --embedding 64 --layers 2 -T 128 -B 32
check gru_big_batch --model gru --channels 128 --embedding 32 --layers 3 -T 64 -B 256
check rnn --model rnn --channels 512 --embedding 64 --layers 2 -T 256 -B 32
echo "memory_test: all passed"
