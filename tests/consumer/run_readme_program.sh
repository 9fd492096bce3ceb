#!/usr/bin/env bash
# Runs the README's program (tests/consumer, readme_program) as a newcomer would: on a model trained
# and exported here, in float32 and float16, and on a missing file.
# Usage: run_readme_program.sh <readme_program> <train> <export>
set -euo pipefail
program=$1 train=$2 export_model=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "run_readme_program: $*" >&2; exit 1; }

for i in $(seq 60); do echo "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs."; done > "$dir/my.txt"
"$train" --data "$dir/my.txt" --channels 32 --layers 1 --heads 2 -T 32 -B 8 --steps 40 --sample-tokens 0 \
  --threads 1 --out "$dir/my.ckpt" > /dev/null || fail "train failed"
"$export_model" --checkpoint "$dir/my.ckpt" --out "$dir/model.bin" > /dev/null || fail "export failed"
"$export_model" --checkpoint "$dir/my.ckpt" --out "$dir/model16.bin" --float16 > /dev/null || fail "float16 export failed"

for model in model.bin model16.bin my.ckpt; do
  "$program" "$dir/$model" "The quick" > "$dir/out.txt" || fail "the program failed on $model"
  # The prompt, 200 new characters (no stop string ends them) and a newline; the text is ASCII.
  [ "$(head -c 9 "$dir/out.txt")" = "The quick" ] || fail "$model: the output does not start with the prompt"
  bytes=$(wc -c < "$dir/out.txt")
  [ "$bytes" -eq 210 ] || fail "$model: $bytes bytes, expected 9 + 200 + 1: $(cat "$dir/out.txt")"
done
# The same seed, the same text: float32 export and checkpoint agree exactly.
[ "$("$program" "$dir/model.bin" "The")" = "$("$program" "$dir/my.ckpt" "The")" ] ||
  fail "the export and its checkpoint generate different text"

status=0
"$program" "$dir/missing.bin" > /dev/null 2> "$dir/err.txt" || status=$?
[ "$status" -eq 1 ] && grep -q "^error: cannot open checkpoint '$dir/missing.bin': No such file or directory" "$dir/err.txt" ||
  { cat "$dir/err.txt"; fail "a missing model: status $status"; }
status=0
"$program" > /dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "no arguments: status $status, expected 2 (usage)"
echo "run_readme_program: the README's program loads an exported model and generates text"
