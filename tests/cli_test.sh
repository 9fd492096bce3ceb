#!/usr/bin/env bash
# End-to-end test of the train, generate and export programs on a small file: a fresh run, a
# resume, a sample, the metrics log, an export, and clear errors on bad input.
# Usage: cli_test.sh <train> <generate> <export>
set -euo pipefail
train=$1
generate=$2
export_model=$3
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

# --recompute (activation checkpointing) trains the same model: the same losses, the same checkpoint
# weights (checked through the final line, which has the losses). Two blocks, dropout on.
for flag in "" --recompute; do
  "$train" --data "$dir/text.txt" --model gpt --channels 16 --layers 2 --heads 2 -T 16 -B 4 --steps 6 --dropout 0.1 \
    --eval-interval 0 --eval-windows 4 --sample-tokens 0 --threads 1 --no-metrics $flag --out "$dir/rc$flag.ckpt" \
    > "$dir/rc$flag.txt" || { cat "$dir/rc$flag.txt"; fail "train $flag failed"; }
done
[ "$(grep -o '^final: steps=6 train_loss=[0-9.]* val_loss=[0-9.]*' "$dir/rc.txt")" = \
  "$(grep -o '^final: steps=6 train_loss=[0-9.]* val_loss=[0-9.]*' "$dir/rc--recompute.txt")" ] ||
  { cat "$dir/rc.txt" "$dir/rc--recompute.txt"; fail "--recompute changed the losses"; }

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
expect_error "character 'Z' (U+005A) at character index 0" "$generate" --checkpoint "$dir/gpt.ckpt" --prompt "Zebra€" \
  --unknown error
expect_error "the replacement '#' is not in the tokenizer's vocabulary" "$generate" --checkpoint "$dir/gpt.ckpt" \
  --prompt "Zebra€" --unknown replace --replacement '#'
# By default an unknown character is skipped, and said so.
"$generate" --checkpoint "$dir/gpt.ckpt" --prompt "Zebra€" --tokens 5 > /dev/null 2> "$dir/unknown.txt" ||
  fail "a prompt with unknown characters was refused"
grep -q "2 prompt characters are not in the model's vocabulary of [0-9]* characters: skipped" "$dir/unknown.txt" ||
  { cat "$dir/unknown.txt"; fail "no note on the skipped characters"; }
expect_error "top-p must be in (0, 1]" "$generate" --checkpoint "$dir/gpt.ckpt" --top-p 1.5
expect_error "temperature must be in \[0, " "$generate" --checkpoint "$dir/gpt.ckpt" --temperature -1
expect_error "not a seqgen checkpoint" "$train" --data "$dir/text.txt" --resume "$dir/random.ckpt" --out "$dir/x.ckpt"
expect_error "--recompute applies to gpt models, not lstm" "$train" --data "$dir/text.txt" --model lstm --recompute \
  --steps 1 --out "$dir/x.ckpt"
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

# --- The metrics log: one line per --log-interval steps and per evaluation, continued on --resume
# (after a line torn by a crash), with the training time carried over.
m=(--data "$dir/text.txt" --model gpt --channels 16 --layers 1 --heads 2 -T 16 -B 4 --eval-windows 4 --sample-tokens 0
   --threads 1 --log-interval 10 --eval-interval 10)
"$train" "${m[@]}" --steps 30 --out "$dir/m.ckpt" > "$dir/m1.txt" || fail "the metrics run failed"
[ -s "$dir/m.metrics.jsonl" ] || fail "no metrics log next to --out"
printf '{"type":"step","step":31,"tok' >> "$dir/m.metrics.jsonl"  # a crash in the middle of a line
"$train" --data "$dir/text.txt" --resume "$dir/m.ckpt" --steps 50 --eval-interval 10 --eval-windows 4 --log-interval 10 \
  --threads 1 --sample-tokens 0 > "$dir/m2.txt" || fail "the resumed metrics run failed"
final_val=$(sed -n 's/^final: .* val_loss=\([0-9.]*\) .*/\1/p' "$dir/m2.txt")
python3 - "$dir/m.metrics.jsonl" "$final_val" <<'PY' || fail "the metrics log is wrong: $(cat "$dir/m.metrics.jsonl")"
import json, math, sys
lines = open(sys.argv[1]).read().split("\n")
records, torn = [], 0
for line in lines[:-1]:
    try:
        records.append(json.loads(line))
    except ValueError:
        torn += 1
assert lines[-1] == "", "the last line is not ended"
assert torn == 1, f"{torn} lines do not parse, expected the one torn line"
types = [r["type"] for r in records]
assert types[0] == "start" and types.count("resume") == 1, types
steps = [r["step"] for r in records if r["type"] == "step"]
assert steps == [1, 10, 20, 30, 31, 40, 50], steps
evals = [r["step"] for r in records if r["type"] == "eval"]
assert evals == [10, 20, 30, 30, 40, 50, 50], evals  # each run ends with a whole-split evaluation
elapsed = [r["elapsed"] for r in records]
assert all(b >= a for a, b in zip(elapsed, elapsed[1:])), f"time goes back: {elapsed}"
for r in records:
    if r["type"] in ("step", "eval"):
        assert r["tokens"] == r["step"] * 4 * 16, r
    if r["type"] == "step":
        assert 0 < r["train_loss"] < 10 and r["lr"] > 0 and r["grad_norm"] > 0 and r["tokens_per_s"] > 0, r
    if r["type"] == "eval":  # characters: bits/char = nats/token / ln 2
        assert abs(r["val_bits_per_char"] - r["val_loss"] / math.log(2)) < 1e-9, r
assert abs(records[-1]["val_loss"] - float(sys.argv[2])) < 1e-4, (records[-1], sys.argv[2])
PY
expect_error "already holds a log: continue it with --resume" "$train" "${m[@]}" --steps 5 --out "$dir/m2.ckpt" \
  --metrics "$dir/m.metrics.jsonl"
expect_error "is the same file as '$dir/text.txt'" "$train" "${m[@]}" --steps 5 --out "$dir/m3.ckpt" \
  --metrics "$dir/text.txt"
"$train" "${m[@]}" --steps 5 --out "$dir/m4.ckpt" --no-metrics > /dev/null || fail "--no-metrics failed"
[ ! -e "$dir/m4.metrics.jsonl" ] || fail "--no-metrics wrote a log"

# --- Export: a third of the checkpoint, half that in float16; generate reads both and the float32
# one generates exactly what the checkpoint does.
"$export_model" --checkpoint "$dir/gpt2.ckpt" --out "$dir/gpt.bin" > "$dir/export.txt" || fail "export failed"
grep -q "export: gpt, [0-9]* parameters, float32 weights" "$dir/export.txt" || { cat "$dir/export.txt"; fail "no export summary"; }
"$export_model" --checkpoint "$dir/gpt2.ckpt" --out "$dir/gpt16.bin" --float16 > /dev/null || fail "float16 export failed"
"$export_model" --checkpoint "$dir/lstm.ckpt" --out "$dir/lstm.bin" > /dev/null || fail "lstm export failed"
ck=$(stat -c %s "$dir/gpt2.ckpt") bin=$(stat -c %s "$dir/gpt.bin") half=$(stat -c %s "$dir/gpt16.bin")
[ $((bin * 100 / ck)) -le 40 ] && [ $((half * 100 / bin)) -le 60 ] ||
  fail "sizes: checkpoint $ck, export $bin, float16 export $half bytes"
for model in gpt2.ckpt gpt.bin gpt16.bin lstm.bin; do
  "$generate" --checkpoint "$dir/$model" --prompt "The " --tokens 30 --temperature 0 > "$dir/$model.txt" 2> /dev/null ||
    fail "generate could not read $model"
done
cmp -s "$dir/gpt2.ckpt.txt" "$dir/gpt.bin.txt" || fail "the export generates other text than its checkpoint"
expect_error "is an exported model (weights only, no optimizer state)" "$train" --data "$dir/text.txt" \
  --resume "$dir/gpt.bin" --out "$dir/x.ckpt"
expect_error "is the --checkpoint: choose another name" "$export_model" --checkpoint "$dir/gpt2.ckpt" --out "$dir/gpt2.ckpt"
expect_error "exists: replace it with --overwrite" "$export_model" --checkpoint "$dir/gpt2.ckpt" --out "$dir/gpt.bin"
expect_error "exists and is not a seqgen file" "$export_model" --checkpoint "$dir/gpt2.ckpt" --out "$dir/text.txt" --overwrite
expect_error "not a seqgen checkpoint" "$export_model" --checkpoint "$dir/random.ckpt" --out "$dir/y.bin"
"$export_model" --checkpoint "$dir/gpt2.ckpt" --out "$dir/gpt.bin" --overwrite > /dev/null || fail "export --overwrite failed"

# --help shows the defaults.
# (Captured first: `grep -q` stops reading at its match, and under pipefail the program's next
# write, a broken pipe, would fail the pipeline now that the help is longer than one write.)
train_help=$("$train" --help)
generate_help=$("$generate" --help)
grep -q -- "--channels INT=256" <<<"$train_help" || fail "train --help shows no default for --channels"
grep -q -- "--unknown.*=skip" <<<"$generate_help" || fail "generate --help shows no default for --unknown"
echo "cli_test: all passed"
