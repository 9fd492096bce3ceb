#!/usr/bin/env bash
# Hostile input to `train` and `generate` (docs/reliability.md): every case must end with a clear
# message on stderr and exit status 1 (2 for a command line that does not parse), never a signal
# or a hang. Usage: hostile_cli_test.sh <train> <generate>
#
# Crafted checkpoints follow docs/checkpoint-format.md; their CRC-32 is computed with gzip (the
# trailer of a gzip stream is the CRC-32 of its input), so the reader gets past the CRC to the
# entries.
set -euo pipefail
train=$1
generate=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "hostile_cli_test: FAIL: $*" >&2; exit 1; }
cases=0

# expect <status> <phrase> <command...>: the exact status, the phrase on stderr, in under 60 s.
expect() {
  local want_status=$1 phrase=$2
  shift 2
  local status=0
  timeout -s KILL 60 "$@" < /dev/null > "$dir/out.txt" 2> "$dir/err.txt" || status=$?
  [ "$status" -ne 137 ] || fail "'$*' hung or was killed"
  [ "$status" -eq "$want_status" ] || { cat "$dir/err.txt"; fail "'$*' exited with $status, expected $want_status"; }
  grep -qF -- "$phrase" "$dir/err.txt" || { cat "$dir/err.txt"; fail "'$*' did not say '$phrase'"; }
  cases=$((cases + 1))
}

for i in $(seq 40); do echo "Sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!"; done > "$dir/text.txt"
tiny=(--channels 16 --layers 1 -T 16 -B 4 --steps 5 --eval-interval 0 --eval-windows 2 --sample-tokens 0 --threads 1)
"$train" --data "$dir/text.txt" --model gpt --heads 2 "${tiny[@]}" --out "$dir/gpt.ckpt" > /dev/null
"$train" --data "$dir/text.txt" --model lstm --embedding 8 "${tiny[@]}" --out "$dir/lstm.ckpt" > /dev/null
"$train" --data "$dir/text.txt" --model rnn --embedding 8 "${tiny[@]}" --out "$dir/rnn.ckpt" > /dev/null

# --- Byte helpers for crafted checkpoints.
le() {  # le <value> <bytes>: little-endian
  local v=$1 n=$2 i out=""
  for ((i = 0; i < n; i++)); do out+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255))); done
  printf "$out"
}
crc_of() { gzip -c | tail -c 8 | head -c 4; }
# checkpoint <out> <entry count> <body file> [declared size]: header + body + CRC
checkpoint() {
  local out=$1 count=$2 body=$3
  local size=${4:-$((24 + $(stat -c %s "$body") + 4))}
  { printf 'SEQGENCK'; le 1 4; le "$count" 4; le "$size" 8; cat "$body"; } > "$out.nocrc"
  { cat "$out.nocrc"; crc_of < "$out.nocrc"; } > "$out"
  rm "$out.nocrc"
}
# entry <type> <key> <payload size> (the payload follows, written by the caller)
entry() { le "$1" 1; le "${#2}" 4; printf '%s' "$2"; le "$3" 8; }
# patch <file> <byte offset> <bytes...>: overwrite in place, then fix the CRC
patch() {
  local file=$1 offset=$2
  shift 2
  printf "$@" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
  local body
  body=$(stat -c %s "$file")
  head -c $((body - 4)) "$file" > "$file.body"
  { cat "$file.body"; crc_of < "$file.body"; } > "$file"
  rm "$file.body"
}
offset_of() { grep -obaF -- "$2" "$1" | head -1 | cut -d: -f1; }  # byte offset of a key

big=$((1 << 62))
# The header claims 2^62 bytes.
: > "$dir/empty_body"
checkpoint "$dir/huge_size.ckpt" 0 "$dir/empty_body" "$big"
# A float32 tensor of 2^31 × 2^31 = 2^62 elements whose payload holds only the shape.
{ entry 5 param/wte.weight 16; le $((1 << 31)) 8; le $((1 << 31)) 8; } > "$dir/body"
checkpoint "$dir/huge_tensor.ckpt" 1 "$dir/body"
# A tensor of 2^62 × 2^62 elements: the product overflows 64 bits.
{ entry 5 param/wte.weight 16; le "$big" 8; le "$big" 8; } > "$dir/body"
checkpoint "$dir/overflow_tensor.ckpt" 1 "$dir/body"
# A string entry that claims a payload of 2^62 bytes.
{ entry 3 model.kind "$big"; printf 'gpt'; } > "$dir/body"
checkpoint "$dir/huge_entry.ckpt" 1 "$dir/body"
# 2^32 − 1 entries announced, none present.
checkpoint "$dir/many_entries.ckpt" 4294967295 "$dir/empty_body"
# A real GPT checkpoint whose config claims 2^62 channels (CRC fixed: only the config check can catch it).
cp "$dir/gpt.ckpt" "$dir/huge_config.ckpt"
at=$(offset_of "$dir/huge_config.ckpt" config.channels)
patch "$dir/huge_config.ckpt" $((at + 15 + 8)) "$(le "$big" 8 | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')"
# ... and one whose config claims a width that fits the rules but not the file (4096 channels).
cp "$dir/gpt.ckpt" "$dir/big_config.ckpt"
at=$(offset_of "$dir/big_config.ckpt" config.channels)
patch "$dir/big_config.ckpt" $((at + 15 + 8)) "$(le 4096 8 | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')"
# Another model kind: an unknown one, and an RNN checkpoint relabelled as a GRU.
cp "$dir/gpt.ckpt" "$dir/kind_xyz.ckpt"
patch "$dir/kind_xyz.ckpt" $(($(offset_of "$dir/kind_xyz.ckpt" model.kind) + 10 + 8)) 'xyz'
cp "$dir/rnn.ckpt" "$dir/rnn_as_gru.ckpt"
patch "$dir/rnn_as_gru.ckpt" $(($(offset_of "$dir/rnn_as_gru.ckpt" model.kind) + 10 + 8)) 'gru'
: > "$dir/empty.ckpt"
head -c 4096 /dev/urandom > "$dir/random.ckpt"
# Random bytes with '{' at byte 8, as a safetensors file has (a random one did this once in 256 runs).
patch "$dir/random.ckpt" 8 '{'
printf 'SEQGENCK' > "$dir/magic_only.ckpt"
head -c 100 "$dir/gpt.ckpt" > "$dir/cut.ckpt"
mkfifo "$dir/fifo"
ln -s "$dir/nowhere" "$dir/dangling"
ln -s "$dir/loop" "$dir/loop"
mkdir "$dir/folder"

# --- The same bad checkpoints through both programs (commands as arrays: timeout runs programs only).
run_generate=("$generate" --tokens 3 --threads 1 --checkpoint)
run_resume=("$train" --data "$dir/text.txt" --threads 1 --out "$dir/out.ckpt" --resume)
for program in generate resume; do
  if [ $program = generate ]; then run=("${run_generate[@]}"); else run=("${run_resume[@]}"); fi
  expect 1 "truncated: 0 bytes cannot hold" "${run[@]}" "$dir/empty.ckpt"
  expect 1 "not a seqgen checkpoint (it starts with bytes" "${run[@]}" "$dir/random.ckpt"
  expect 1 "truncated: 8 bytes cannot hold" "${run[@]}" "$dir/magic_only.ckpt"
  expect 1 "truncated: the header says" "${run[@]}" "$dir/cut.ckpt"
  expect 1 "truncated: the header says 4611686018427387904 bytes but there are only 28" "${run[@]}" "$dir/huge_size.ckpt"
  expect 1 "shape (2147483648, 2147483648) is larger than the file" "${run[@]}" "$dir/huge_tensor.ckpt"
  expect 1 "shape (4611686018427387904, 4611686018427387904) overflows" "${run[@]}" "$dir/overflow_tensor.ckpt"
  expect 1 "entry 'model.kind': size 4611686018427387904 is larger than the file" "${run[@]}" "$dir/huge_entry.ckpt"
  expect 1 "entry #0: header is larger than the file" "${run[@]}" "$dir/many_entries.ckpt"
  expect 1 "huge_config.ckpt': config.channels = 4611686018427387904 is out of range [1, 16777216]" "${run[@]}" "$dir/huge_config.ckpt"
  expect 1 "parameters, more than its" "${run[@]}" "$dir/big_config.ckpt"
  expect 1 "holds an unknown model kind 'xyz'" "${run[@]}" "$dir/kind_xyz.ckpt"
  expect 1 "has shape (16, 8), expected (48, 8)" "${run[@]}" "$dir/rnn_as_gru.ckpt"
  expect 1 "is not a regular file" "${run[@]}" "$dir/fifo"
  expect 1 "is not a regular file" "${run[@]}" "$dir/folder"
  expect 1 "No such file or directory" "${run[@]}" "$dir/dangling"
  expect 1 "Too many levels of symbolic links" "${run[@]}" "$dir/loop"
done
# A checkpoint of another kind than the one asked for.
expect 1 "--model gpt conflicts with --resume '$dir/lstm.ckpt', which holds a 'lstm' model" \
  "$train" --data "$dir/text.txt" --resume "$dir/lstm.ckpt" --model gpt --out "$dir/out.ckpt"
# A resume on another text.
for i in $(seq 30); do echo "How quick daft zebras jump! Sphinx of black quartz, judge my vow."; done > "$dir/other.txt"
expect 1 "was trained on a different text" "$train" --data "$dir/other.txt" --resume "$dir/gpt.ckpt" --out "$dir/out.ckpt"

# --- Bad data files.
train_on=("$train" "${tiny[@]}" --heads 2 --out "$dir/out.ckpt" --data)
expect 1 "is a directory, expected a text file" "${train_on[@]}" "$dir/folder"
expect 1 "does not exist" "${train_on[@]}" "$dir/dangling"
expect 1 "is not a regular file" "${train_on[@]}" "$dir/fifo"
expect 1 "is not a regular file" "${train_on[@]}" /dev/null
expect 1 "Too many levels of symbolic links" "${train_on[@]}" "$dir/loop"
: > "$dir/empty.txt"
expect 1 "is empty" "${train_on[@]}" "$dir/empty.txt"
if [ "$(id -u)" -ne 0 ]; then
  cp "$dir/text.txt" "$dir/secret.txt" && chmod 000 "$dir/secret.txt"
  expect 1 "Permission denied" "${train_on[@]}" "$dir/secret.txt"
else
  echo "hostile_cli_test: (running as root: an unreadable file cannot be made with chmod; the FIFO, /dev/null and a symlink loop stand in)"
fi
echo "abc" > "$dir/short.txt"
expect 1 "has 4 training tokens, fewer than one window of T = 16" "$train" --data "$dir/short.txt" --channels 16 --layers 1 --heads 2 -T 16 -B 4 --steps 5 \
  --sample-tokens 0 --out "$dir/out.ckpt"

# --- train options out of range.
# Every case fails before training, so the default (large) model is never built.
t=("$train" --data "$dir/text.txt" --out "$dir/out.ckpt")
expect 1 "--channels must be in [1, 16777216], got -8" "${t[@]}" --channels -8
expect 1 "--layers must be in [1, 16777216], got -1" "${t[@]}" --layers -1
expect 1 "--heads must be in [1, 16777216], got 0" "${t[@]}" --heads 0
expect 1 "GptConfig: heads (3) must divide channels (256)" "${t[@]}" --heads 3
expect 1 "--context must be in [1, 16777216], got 0" "${t[@]}" --context 0
expect 1 "--context must be in [1, 16777216], got 1000000000" "${t[@]}" --context 1000000000
expect 1 "--seq-len must be in [1, 1048576], got 0" "${t[@]}" -T 0
expect 1 "--seq-len must be in [1, 1048576], got 1000000000" "${t[@]}" -T 1000000000
expect 1 "Trainer: seq_len 32 exceeds the model's context 16" "${t[@]}" -T 32 --context 16
expect 1 "--batch must be in [1, 1048576], got -4" "${t[@]}" -B -4
expect 1 "--steps must be in [1, 9007199254740992], got -5" "${t[@]}" --steps -5
expect 1 "--lr must be in [1e-12, 1e+06], got -0.001" "${t[@]}" --lr -1e-3
expect 1 "--lr must be in [1e-12, 1e+06], got nan" "${t[@]}" --lr nan
expect 1 "--weight-decay must be in [0, 1000], got -0.5" "${t[@]}" --weight-decay -0.5
expect 1 "--clip must be in [0, 1e+30], got inf" "${t[@]}" --clip inf
expect 1 "--dropout must be in [0, 0.99], got 1.5" "${t[@]}" --dropout 1.5
expect 1 "--val-fraction must be in [0, 0.9], got 1" "${t[@]}" --val-fraction 1
expect 1 "--minutes must be in [0, 1e+06], got -1" "${t[@]}" --minutes -1
expect 1 "--minutes must be in [0, 1e+06], got 1e+300" "${t[@]}" --minutes 1e300
expect 1 "--threads must be in [0, 4096], got -2" "${t[@]}" --threads -2
expect 1 "--skip-nonfinite must be in [0, 9007199254740992], got -1" "${t[@]}" --skip-nonfinite -1
expect 1 "--eval-windows must be in [1, 1099511627776], got 0" "${t[@]}" --eval-windows 0
expect 1 "--save-interval must be in [0, 9007199254740992], got -1" "${t[@]}" --save-interval -1
expect 1 "GptConfig: " "${t[@]}" --channels 16777216 --heads 1
# 1.1e10 parameters, 173 GB with their gradients and moments: more than the machines this runs on.
expect 1 "GiB available (lower --batch, --seq-len, --channels or --layers)" "${t[@]}" --channels 30000 --heads 1 --layers 1
expect 1 "--embedding must be in [1, 16777216], got -3" "${t[@]}" --model lstm --embedding -3
expect 1 "--channels must be in [1, 16777216], got 0" "${t[@]}" --model gru --channels 0
# A command line that does not parse: usage status 2.
expect 2 "--steps: 'abc' is not an integer" "${t[@]}" --steps abc
expect 2 "The following argument was not expected: --bogus" "${t[@]}" --bogus
expect 2 "--model: x not in" "${t[@]}" --model x
expect 2 "--data is required" "$train"

# --- generate options out of range.
g=("$generate" --checkpoint "$dir/gpt.ckpt")
expect 1 "--temperature must be in [0, 1e+06], got -1" "${g[@]}" --temperature -1
expect 1 "--temperature must be in [0, 1e+06], got inf" "${g[@]}" --temperature inf
expect 1 "--top-p must be in (0, 1], got 0" "${g[@]}" --top-p 0
expect 1 "--top-p must be in (0, 1], got 1.5" "${g[@]}" --top-p 1.5
expect 1 "--top-p must be in (0, 1], got -0.2" "${g[@]}" --top-p -0.2
expect 1 "--top-p must be in (0, 1], got nan" "${g[@]}" --top-p nan
expect 1 "--top-k must be in [0, 2147483648], got -1" "${g[@]}" --top-k -1
expect 1 "--min-p must be in [0, 1], got 2" "${g[@]}" --min-p 2
expect 1 "--repeat-penalty must be in [0.001, 1000], got 0" "${g[@]}" --repeat-penalty 0
expect 1 "--repeat-last-n must be in [-1, 2147483648], got -5" "${g[@]}" --repeat-last-n -5
expect 1 "--tokens must be in [0, 4294967296], got -5" "${g[@]}" --tokens -5
expect 1 "--samples must be in [1, 4096], got 0" "${g[@]}" --samples 0
expect 1 "--samples must be in [1, 4096], got 100000" "${g[@]}" --samples 100000
expect 1 "--threads must be in [0, 4096], got -1" "${g[@]}" --threads -1
expect 1 "is not a regular file" "${g[@]}" --prompt-file "$dir/fifo"
expect 1 "is a directory" "${g[@]}" --prompt-file "$dir/folder"
expect 2 "--tokens: 'many' is not an integer" "${g[@]}" --tokens many
expect 2 "--checkpoint is required" "$generate"
# --- Nothing the user owns is lost: --out never replaces an input, a device, a file that is not a
# checkpoint, or a checkpoint the run was not handed (each file compared byte for byte after).
cp "$dir/text.txt" "$dir/keep_text.txt"
unchanged() {  # unchanged <file> <copy>: the file still holds exactly what the copy holds
  cmp -s "$1" "$2" || fail "'$1' was changed"
}
out_run=("$train" "${tiny[@]}" --heads 2 --data "$dir/text.txt")
expect 1 "is the training text --data" "${out_run[@]}" --out "$dir/text.txt"
expect 1 "is the training text --data" "${out_run[@]}" --out "$dir/../$(basename "$dir")/./text.txt"
ln -s "$dir/text.txt" "$dir/text_link.txt"
expect 1 "is the training text --data" "${out_run[@]}" --out "$dir/text_link.txt"
ln "$dir/text.txt" "$dir/text_hardlink.txt"
expect 1 "is the training text --data" "${out_run[@]}" --out "$dir/text_hardlink.txt"
expect 1 "is the training text --data" "$train" --data "$dir/text.txt" --resume "$dir/gpt.ckpt" --out "$dir/text.txt"
unchanged "$dir/text.txt" "$dir/keep_text.txt"
expect 1 "it exists and is not a regular file" "${out_run[@]}" --out "$dir/fifo"
[ -p "$dir/fifo" ] || fail "the FIFO was replaced"
if [ "$(id -u)" -eq 0 ] && mknod "$dir/null_device" c 1 3 2> /dev/null; then
  expect 1 "it exists and is not a regular file" "${out_run[@]}" --out "$dir/null_device"
  [ -c "$dir/null_device" ] || fail "the device node was replaced"
fi
expect 1 "it is a folder" "${out_run[@]}" --out "$dir/folder"
expect 1 "--out is empty" "${out_run[@]}" --out ""
# An existing checkpoint: a new run refuses it unless told; another kind changes nothing.
cp "$dir/lstm.ckpt" "$dir/keep_lstm.ckpt"
expect 1 "already holds a checkpoint: continue it with --resume" "${out_run[@]}" --out "$dir/lstm.ckpt"
expect 1 "already holds a checkpoint" "$train" --data "$dir/text.txt" --resume "$dir/gpt.ckpt" --out "$dir/lstm.ckpt"
unchanged "$dir/lstm.ckpt" "$dir/keep_lstm.ckpt"
echo "notes" > "$dir/notes.txt" && cp "$dir/notes.txt" "$dir/keep_notes.txt"
expect 1 "exists and is not a seqgen checkpoint: refusing to replace it, even with --overwrite" \
  "${out_run[@]}" --overwrite --out "$dir/notes.txt"
unchanged "$dir/notes.txt" "$dir/keep_notes.txt"
"${out_run[@]}" --overwrite --out "$dir/lstm.ckpt" > /dev/null || fail "--overwrite did not replace a checkpoint"
cmp -s "$dir/lstm.ckpt" "$dir/keep_lstm.ckpt" && fail "--overwrite left the checkpoint as it was"
cp "$dir/keep_lstm.ckpt" "$dir/lstm.ckpt"
# Names the file system cannot hold are refused before the first step, not after training.
long=$(printf 'm%.0s' $(seq 250))
expect 1 "File name too long" "${out_run[@]}" --out "$dir/$long.ckpt"
grep -q '^step' "$dir/out.txt" && fail "trained before refusing a name that is too long"

# --- Memory is budgeted before it is allocated: one line naming the request, never bad_alloc.
truncate -s 5G "$dir/sparse.txt"
truncate -s 5G "$dir/zeros.ckpt"
expect 1 "--data '$dir/sparse.txt' (5 GiB, read and tokenized) needs" "$train" --data "$dir/sparse.txt" --out "$dir/o.ckpt"
expect 1 "--prompt-file '$dir/sparse.txt' (5 GiB) needs" "$generate" --checkpoint "$dir/gpt.ckpt" --prompt-file "$dir/sparse.txt"
start=$(date +%s%N)
expect 1 "not a seqgen checkpoint (it starts with bytes 00 00 00 00 00 00 00 00" "$generate" --checkpoint "$dir/zeros.ckpt"
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 2000 ] || fail "a 5 GB file of zeros took more than 2 s to refuse"
rm "$dir/sparse.txt" "$dir/zeros.ckpt"
expect 1 "generating --samples 4096 of --tokens 4294967296 after a prompt of 1 tokens needs" \
  "$generate" --checkpoint "$dir/gpt.ckpt" --samples 4096 --tokens 4294967296 --prompt S
expect 1 "GiB available (lower --batch, --seq-len, --channels or --layers)" "$train" --data "$dir/text.txt" \
  --out "$dir/o.ckpt" -B 1048576 -T 16 --val-fraction 0
# A checkpoint whose stored batch asks for more memory than there is (CRC fixed).
cp "$dir/gpt.ckpt" "$dir/huge_batch.ckpt"
patch "$dir/huge_batch.ckpt" $(($(offset_of "$dir/huge_batch.ckpt" train.batch) + 11 + 8)) \
  "$(le $((1 << 20)) 8 | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')"
expect 1 "resuming '$dir/huge_batch.ckpt' (batch 1048576, seq_len 16, fixed by the checkpoint) needs" \
  "$train" --data "$dir/text.txt" --resume "$dir/huge_batch.ckpt"

# --- The checkpoint and the model agree, and errors name the file and the field.
cp "$dir/gpt.ckpt" "$dir/zero_batch.ckpt"
patch "$dir/zero_batch.ckpt" $(($(offset_of "$dir/zero_batch.ckpt" train.batch) + 11 + 8)) "$(le 0 8 | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')"
expect 1 "checkpoint '$dir/zero_batch.ckpt': train.batch = 0 is out of range [1, 1048576]" \
  "$train" --data "$dir/text.txt" --resume "$dir/zero_batch.ckpt"
cp "$dir/gpt.ckpt" "$dir/nan_weight.ckpt"  # the first weight of wte: key, payload size, rows, cols, then data
patch "$dir/nan_weight.ckpt" $(($(offset_of "$dir/nan_weight.ckpt" param/wte.weight) + 16 + 8 + 16)) '\x00\x00\xc0\x7f'
expect 1 "checkpoint '$dir/nan_weight.ckpt': tensor 'param/wte.weight' holds a NaN or infinite weight (the checkpoint is damaged)" \
  "$generate" --checkpoint "$dir/nan_weight.ckpt"

# --- Options mean what they say.
r=("$train" --data "$dir/text.txt" --resume "$dir/gpt.ckpt" --out "$dir/resumed.ckpt" --overwrite --eval-windows 2 --sample-tokens 0 --threads 1)
expect 1 "--channels 32 conflicts with --resume '$dir/gpt.ckpt', whose run has config.channels = 16" "${r[@]}" --channels 32
expect 1 "--batch 8 conflicts with --resume '$dir/gpt.ckpt', whose run has train.batch = 4" "${r[@]}" -B 8
expect 1 "--seq-len 8 conflicts" "${r[@]}" -T 8
expect 1 "--tokenizer byte conflicts with --resume '$dir/gpt.ckpt', whose run has a char tokenizer" "${r[@]}" --tokenizer byte
expect 1 "--val-fraction 0.2 conflicts" "${r[@]}" --val-fraction 0.2
expect 1 "--seed 7 conflicts" "${r[@]}" --seed 7
expect 1 "--heads applies to gpt models, not lstm" "$train" --data "$dir/text.txt" --resume "$dir/lstm.ckpt" --heads 2
expect 1 "--embedding applies to rnn, lstm and gru models, not gpt" "${out_run[@]}" --embedding 8 --out "$dir/o.ckpt"
# The same value again is fine; a learning rate is applied and reported.
"${r[@]}" --channels 16 -B 4 --lr 0.01 --steps 6 > "$dir/out.txt" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "a resume repeating its options failed"; }
grep -q "^resume: --lr 0.01 replaces the checkpoint's 0.001$" "$dir/out.txt" || { cat "$dir/out.txt"; fail "the new --lr was not reported"; }
expect 2 "--steps: '' is not an integer (the value is empty)" "${out_run[@]}" --steps "" --out "$dir/o.ckpt"
expect 2 "--lr: '' is not a number (the value is empty)" "${out_run[@]}" --lr "" --out "$dir/o.ckpt"
expect 2 "--temperature: '' is not a number (the value is empty)" "${g[@]}" --temperature ""
expect 1 "--steps must be in [1, 9007199254740992], got 99999999999999999999" "${out_run[@]}" --steps 99999999999999999999
expect 1 "--threads must be in [0, 4096], got 4294967297" "${out_run[@]}" --threads 4294967297
expect 1 "--seed must be in [0, 18446744073709551615], got -1" "${out_run[@]}" --seed -1
expect 1 "--top-k must be in [0, 2147483648], got 1e300" "${g[@]}" --top-k 1e300
expect 1 "--repeat-penalty must be in [0.001, 1000], got 9.99989e-321" "${g[@]}" --repeat-penalty 1e-320
expect 1 "--val-fraction 0.01 holds out 30 tokens of --data '$dir/text.txt', fewer than one window of T = 64" \
  "${out_run[@]}" --val-fraction 0.01 -T 64 --out "$dir/o.ckpt"
grep -q '^step' "$dir/out.txt" && fail "trained before refusing a validation split that is too small"
# More threads than CPUs: capped the same way by both programs.
"${out_run[@]}" --threads 4096 --out "$dir/threads.ckpt" > /dev/null 2> "$dir/err.txt" || fail "train --threads 4096 failed"
grep -q "^train: --threads 4096 is more than the [0-9]* CPUs\? this process may run on; using [0-9]*$" "$dir/err.txt" || { cat "$dir/err.txt"; fail "train did not cap --threads"; }
"${g[@]}" --tokens 2 --threads 4096 > /dev/null 2> "$dir/err.txt" || fail "generate --threads 4096 failed"
grep -q "^generate: --threads 4096 is more than the [0-9]* CPUs\? this process may run on; using [0-9]*$" "$dir/err.txt" || { cat "$dir/err.txt"; fail "generate did not cap --threads"; }
cases=$((cases + 3))

echo "hostile_cli_test: all $cases cases passed"
