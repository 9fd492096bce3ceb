#!/usr/bin/env bash
# End-to-end test of the train and generate programs on a small file: a fresh run, a resume, a
# sample, and clear errors on bad input. Usage: cli_test.sh <train> <generate>
set -euo pipefail
train=$1
generate=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "cli_test: $*" >&2; exit 1; }

for i in $(seq 60); do echo "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs."; done > "$dir/text.txt"

# A fresh GPT run: the summary line and the checkpoint.
"$train" --data "$dir/text.txt" --model gpt --channels 16 --layers 1 --heads 2 -T 16 -B 4 --steps 30 \
  --eval-interval 0 --eval-windows 4 --sample-tokens 20 --threads 1 --out "$dir/gpt.ckpt" > "$dir/out.txt"
grep -q '^final: steps=30 train_loss=[0-9.]* val_loss=[0-9.]* val_bits_per_char=[0-9.]* val_tokens=[0-9]* val_chars=[0-9]* tokens_per_s=[0-9]* checkpoint=' \
  "$dir/out.txt" || { cat "$dir/out.txt"; fail "no summary line"; }
[ -s "$dir/gpt.ckpt" ] || fail "no checkpoint"

# Resume to 40 steps.
"$train" --data "$dir/text.txt" --resume "$dir/gpt.ckpt" --steps 40 --eval-interval 0 --eval-windows 4 \
  --sample-tokens 0 --threads 1 --out "$dir/gpt2.ckpt" > "$dir/out2.txt"
grep -q '^final: steps=40 ' "$dir/out2.txt" || { cat "$dir/out2.txt"; fail "resume did not reach step 40"; }

# A byte-level BPE run: bits/char = nats/token x tokens / characters / ln 2 over the scored
# held-out tokens (more characters than tokens: merges were learned), and generation.
"$train" --data "$dir/text.txt" --model gpt --channels 16 --layers 1 --heads 2 -T 16 -B 4 --steps 5 \
  --tokenizer bpe --vocab-size 300 --eval-interval 0 --final-eval-windows 16 --sample-tokens 0 --threads 1 \
  --out "$dir/bpe.ckpt" > "$dir/bpe.txt" || { cat "$dir/bpe.txt"; fail "bpe run failed"; }
line=$(grep '^final: ' "$dir/bpe.txt")
[[ "$line" =~ val_loss=([0-9.]+)\ val_bits_per_char=([0-9.]+)\ val_tokens=([0-9]+)\ val_chars=([0-9]+) ]] ||
  fail "bpe summary: $line"
awk -v l="${BASH_REMATCH[1]}" -v b="${BASH_REMATCH[2]}" -v t="${BASH_REMATCH[3]}" -v c="${BASH_REMATCH[4]}" \
  'BEGIN { e = l * t / c / log(2); exit !(t > 0 && c > t && (b - e) ^ 2 < 1e-6) }' || fail "bpe bits/char: $line"
"$generate" --checkpoint "$dir/bpe.ckpt" --prompt "The quick" --tokens 10 > /dev/null 2>&1 || fail "bpe generate failed"

# An LSTM run.
"$train" --data "$dir/text.txt" --model lstm --channels 16 --embedding 8 --layers 1 -T 16 -B 4 --steps 20 \
  --eval-interval 0 --eval-windows 4 --sample-tokens 0 --threads 1 --out "$dir/lstm.ckpt" | grep -q '^final: steps=20 ' ||
  fail "lstm run failed"

# Generation writes the requested number of characters after the prompt.
text=$("$generate" --checkpoint "$dir/gpt2.ckpt" --prompt "The " --tokens 25 --seed 3 2> "$dir/gen_err.txt") ||
  fail "generate failed: $(cat "$dir/gen_err.txt")"
[ ${#text} -ge 29 ] || fail "generate wrote '$text'"
grep -q 'tokens/s' "$dir/gen_err.txt" || fail "generate reported no speed"
"$generate" --checkpoint "$dir/lstm.ckpt" --prompt "The " --tokens 10 > /dev/null 2>&1 || fail "lstm generate failed"
# A batch of samples, each cut at a stop string that the model is bound to write ("o" is common).
"$generate" --checkpoint "$dir/gpt2.ckpt" --samples 3 --tokens 40 --stop o --top-p 0.9 --min-p 0.05 \
  --repeat-penalty 1.1 > "$dir/samples.txt" 2> /dev/null || fail "batched generate failed"
[ "$(grep -c '^--- sample' "$dir/samples.txt")" -eq 3 ] || { cat "$dir/samples.txt"; fail "expected 3 samples"; }
if grep -v '^--- sample' "$dir/samples.txt" | grep o > /dev/null; then cat "$dir/samples.txt"; fail "a stop string was printed"; fi

# Bad input: a clear message and a non-zero exit, never a crash.
expect_error() {  # expect_error <substring> <command...>
  local want=$1
  shift
  local status=0
  "$@" > "$dir/err_out.txt" 2> "$dir/err.txt" || status=$?
  [ "$status" -ne 0 ] && [ "$status" -lt 128 ] || fail "'$*' exited with $status"
  grep -q -- "$want" "$dir/err.txt" || { cat "$dir/err.txt"; fail "'$*' did not say '$want'"; }
}
expect_error "does not exist" "$train" --data "$dir/missing.txt" --steps 1 --out "$dir/x.ckpt"
expect_error "is a directory" "$train" --data "$dir" --steps 1 --out "$dir/x.ckpt"
expect_error "heads (3) must divide channels (16)" "$train" --data "$dir/text.txt" --channels 16 --heads 3 --steps 1 --out "$dir/x.ckpt"
: > "$dir/empty.ckpt"
expect_error "truncated" "$generate" --checkpoint "$dir/empty.ckpt"
head -c 2000 /dev/urandom > "$dir/random.ckpt"
expect_error "not a seqgen checkpoint" "$generate" --checkpoint "$dir/random.ckpt"
expect_error "character 'Z' (U+005A) at character index 0" "$generate" --checkpoint "$dir/gpt.ckpt" --prompt "Zebra€"
expect_error "top-p must be in (0, 1]" "$generate" --checkpoint "$dir/gpt.ckpt" --top-p 1.5
expect_error "temperature must be in \[0, " "$generate" --checkpoint "$dir/gpt.ckpt" --temperature -1
expect_error "not a seqgen checkpoint" "$train" --data "$dir/text.txt" --resume "$dir/random.ckpt" --out "$dir/x.ckpt"
# SIGINT mid-run: the checkpoint is saved, the exit status is 130, and the run resumes from it.
"$train" --data "$dir/text.txt" --model gpt --channels 16 --layers 1 --heads 2 -T 16 -B 4 --steps 1000000 \
  --eval-interval 0 --eval-windows 4 --threads 1 --out "$dir/int.ckpt" > "$dir/int.txt" 2> "$dir/int_err.txt" &
pid=$!
for _ in $(seq 100); do grep -q '^step' "$dir/int.txt" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
kill -INT $pid
status=0
wait $pid || status=$?
[ "$status" -eq 130 ] || { cat "$dir/int_err.txt"; fail "SIGINT exit status $status, expected 130"; }
grep -q 'SIGINT received, checkpoint saved' "$dir/int_err.txt" || fail "no SIGINT message"
"$train" --data "$dir/text.txt" --resume "$dir/int.ckpt" --steps 1 --eval-windows 2 --sample-tokens 0 --threads 1 \
  --out "$dir/int2.ckpt" > "$dir/int2.txt" 2>&1 || { cat "$dir/int2.txt"; fail "the checkpoint saved on SIGINT does not resume"; }
grep -q '^resumed ' "$dir/int2.txt" || fail "no resume message"
echo "cli_test: all passed"
