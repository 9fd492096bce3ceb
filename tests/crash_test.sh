#!/usr/bin/env bash
# Crash safety of `train` (docs/reliability.md). Usage: crash_test.sh <train> <generate>
#
# 1. Kill chains, GPT and LSTM: `train` saves every step and is killed (SIGKILL at a random moment,
#    SIGKILL while a checkpoint save is under way, SIGTERM, SIGINT), then resumed from its checkpoint,
#    again and again. After every kill the checkpoint must pass the full validation (CRC included)
#    and show progress; the chain's final checkpoint must equal, byte for byte, the one of a run that
#    was never interrupted.
# 2. A full disk (a tmpfs that holds one checkpoint but not two) and a file size limit (ulimit -f,
#    no privileges needed): a clear error, exit status 1, the previous checkpoint intact and
#    loadable, no temporary file left. The tmpfs case is skipped, with the reason, when a tmpfs
#    cannot be mounted (not root, or a container without the capability).
# 3. An output folder that cannot be written (its parent is a regular file, a missing folder, a
#    read-only mount): a clear error before any training.
# 4. A write, fsync or close of the temporary file that fails (an LD_PRELOAD seam,
#    tests/fault/fail_writes.c, built here with cc): status 1, a message, the previous checkpoint
#    intact and no temporary file left.
# 5. SIGINT during a long final sample stops it within a second; a memory limit (ulimit -v) too
#    small for the model is refused with a message, before allocating.
# The kill delays come from a fixed seed; a run takes about 20 s on 2 cores.
set -euo pipefail
train=$1
generate=$2
dir=$(mktemp -d)
mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do umount "$m" 2> /dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "crash_test: FAIL: $*" >&2; exit 1; }
RANDOM=20261130  # the kill delays are reproducible

# About 30 kB of text from a fixed word list.
words=(the quick brown fox jumps over lazy dog and then sleeps a river runs past old mills we count stars)
for i in $(seq 600); do
  echo "${words[i % 19]} ${words[(i * 7) % 19]} ${words[(i * 11) % 19]}, ${words[(i * 3) % 19]} ${words[(i * 13) % 19]}."
done > "$dir/text.txt"

quiet=(--eval-interval 0 --eval-windows 2 --final-eval-windows 2 --sample-tokens 0 --threads 1)

# The step a checkpoint holds, read by resuming it for zero further steps into a scratch file.
checkpoint_step() {
  "$train" --data "$dir/text.txt" --resume "$1" --steps 1 "${quiet[@]}" --overwrite --out "$dir/probe.ckpt" 2>&1 |
    sed -n 's/^resumed .* at step \([0-9]*\) of .*/\1/p'
}

# Full validation (magic, sizes, CRC, every tensor's shape) by loading the model and sampling a token.
require_valid() {  # require_valid <checkpoint> <when>
  "$generate" --checkpoint "$1" --tokens 1 --threads 1 > /dev/null 2> "$dir/gen_err.txt" ||
    fail "$2: the checkpoint does not load: $(cat "$dir/gen_err.txt")"
}

# kill_chain <name> <interruptions> <train options...>: each interruption is a letter,
#   K  SIGKILL at a random moment     S  SIGKILL while a checkpoint save is under way
#   T  SIGTERM at a random moment     I  SIGINT at a random moment
kill_chain() {
  local name=$1 plan=$2
  shift 2
  local kills=${#plan}
  local ref="$dir/$name.ref.ckpt" ck="$dir/$name.ckpt"
  local start
  start=$(date +%s%N)
  "$train" --data "$dir/text.txt" "$@" "${quiet[@]}" --out "$ref" > "$dir/$name.ref.log" 2>&1 ||
    { cat "$dir/$name.ref.log"; fail "$name: the uninterrupted run failed"; }
  local total
  total=$(sed -n 's/^final: steps=\([0-9]*\) .*/\1/p' "$dir/$name.ref.log")

  local round last=0 mid_save=0 pid status kind delay
  local args=("$@")
  for round in $(seq "$kills"); do
    # Round 1 starts fresh, every later one resumes from the checkpoint the previous one left.
    if [ "$round" -eq 1 ]; then
      "$train" --data "$dir/text.txt" "${args[@]}" "${quiet[@]}" --save-interval 1 --out "$ck" > "$dir/run.log" 2>&1 &
    else
      "$train" --data "$dir/text.txt" --resume "$ck" "${quiet[@]}" --save-interval 1 > "$dir/run.log" 2>&1 &
    fi
    pid=$!
    # Wait for the first checkpoint of this process (or the one it resumed from) and a first step.
    for _ in $(seq 500); do [ -s "$ck" ] && grep -q '^step\|^resumed' "$dir/run.log" && break; sleep 0.01; done
    case ${plan:round-1:1} in
      K) kind=KILL; delay=$(printf '0.%03d' $((50 + RANDOM % 500))); sleep "$delay" ;;
      S) kind=KILL-during-save; delay=save
         # A save writes <ck>.tmp.<pid>.<n>, then renames it: kill while that file exists.
         while kill -0 "$pid" 2> /dev/null; do
           compgen -G "$ck.tmp.$pid.*" > /dev/null && break
         done ;;
      T) kind=TERM; delay=$(printf '0.%03d' $((50 + RANDOM % 300))); sleep "$delay" ;;
      I) kind=INT; delay=$(printf '0.%03d' $((50 + RANDOM % 300))); sleep "$delay" ;;
      *) fail "bad plan letter in $plan" ;;
    esac
    kill -s "${kind%%-*}" "$pid" 2> /dev/null || true
    status=0
    wait "$pid" 2> /dev/null || status=$?  # (no "Killed" job notice)
    case $kind in
      KILL*) [ "$status" -eq 137 ] || { cat "$dir/run.log"; fail "$name round $round: status $status after SIGKILL (did the run end before the kill?)"; } ;;
      TERM) [ "$status" -eq 143 ] && grep -q 'SIGTERM received, checkpoint saved' "$dir/run.log" ||
              { cat "$dir/run.log"; fail "$name round $round: SIGTERM gave status $status, expected 143 and a saved checkpoint"; } ;;
      INT) [ "$status" -eq 130 ] && grep -q 'SIGINT received, checkpoint saved' "$dir/run.log" ||
              { cat "$dir/run.log"; fail "$name round $round: SIGINT gave status $status, expected 130 and a saved checkpoint"; } ;;
    esac
    # A temporary file of the killed process proves the kill landed inside a save. It is garbage
    # (documented); remove it so that the next round's test sees only its own.
    if compgen -G "$ck.tmp.$pid.*" > /dev/null; then
      mid_save=$((mid_save + 1))
      rm -f "$ck".tmp."$pid".*
    fi
    require_valid "$ck" "$name round $round ($kind after $delay s)"
    local step
    step=$(checkpoint_step "$ck")
    [ -n "$step" ] || fail "$name round $round: cannot read the checkpoint's step"
    [ "$step" -ge "$last" ] && [ "$step" -lt "$total" ] ||
      fail "$name round $round: checkpoint at step $step after one at $last (total $total)"
    echo "crash_test: $name round $round: $kind after $delay s -> checkpoint at step $step"
    last=$step
  done
  [ "$mid_save" -ge 1 ] || fail "$name: no kill landed inside a checkpoint save"

  # The last resume runs to the end: the same bytes as the uninterrupted run.
  "$train" --data "$dir/text.txt" --resume "$ck" "${quiet[@]}" > "$dir/run.log" 2>&1 ||
    { cat "$dir/run.log"; fail "$name: the final resume failed"; }
  cmp -s "$ck" "$ref" || fail "$name: after $kills interruptions the final checkpoint differs from the uninterrupted run's"
  [ -z "$(compgen -G "$ck.tmp.*")" ] || fail "$name: temporary files left by completed saves"
  echo "crash_test: $name: $kills interruptions ($mid_save inside a save), final checkpoint identical to the" \
    "uninterrupted run's ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
}

kill_chain gpt KSKSTKSI --model gpt --channels 64 --layers 2 --heads 4 -T 32 -B 8 --dropout 0.1 --steps 400 --seed 3
kill_chain lstm SKSKI --model lstm --channels 96 --embedding 32 --layers 2 -T 32 -B 8 --steps 300 --seed 4

# --- A full disk: a tmpfs with room for one checkpoint, not for the temporary file of a second.
small=(--data "$dir/text.txt" --model gpt --channels 32 --layers 1 --heads 2 -T 16 -B 4 --seed 5 "${quiet[@]}")
"$train" "${small[@]}" --steps 40 --out "$dir/size.ckpt" > /dev/null 2>&1 || fail "the small run failed"
size=$(stat -c %s "$dir/size.ckpt")
mkdir "$dir/full"
room=$(( (size * 3 / 2 + 4095) / 4096 * 4096 ))
if mount -t tmpfs -o size=$room tmpfs "$dir/full" 2> "$dir/mount_err.txt"; then
  mounted+=("$dir/full")
  status=0
  "$train" "${small[@]}" --steps 40 --save-interval 10 --out "$dir/full/m.ckpt" > "$dir/full.log" 2>&1 || status=$?
  [ "$status" -eq 1 ] || { cat "$dir/full.log"; fail "full disk: exit status $status, expected 1"; }
  grep -q "train: error: cannot save checkpoint '$dir/full/m.ckpt': .*No space left on device; '$dir/full/m.ckpt' keeps its previous contents (step 10)" \
    "$dir/full.log" || { cat "$dir/full.log"; fail "full disk: no clear error"; }
  require_valid "$dir/full/m.ckpt" "full disk"
  [ "$(checkpoint_step "$dir/full/m.ckpt")" = 10 ] || fail "full disk: the previous checkpoint is not the step-10 one"
  [ "$(ls -A "$dir/full" | grep -vx m.metrics.jsonl)" = m.ckpt ] || fail "full disk: files left behind: $(ls -A "$dir/full")"
  echo "crash_test: full disk ($room-byte tmpfs, $size-byte checkpoint): clear error, step-10 checkpoint intact"

  # A read-only folder (root ignores permission bits, not a read-only mount).
  mkdir "$dir/ro"
  mount -t tmpfs -o ro,size=64k tmpfs "$dir/ro"
  mounted+=("$dir/ro")
  status=0
  "$train" "${small[@]}" --out "$dir/ro/m.ckpt" > /dev/null 2> "$dir/ro.txt" || status=$?
  [ "$status" -eq 1 ] && grep -q "cannot write checkpoint '$dir/ro/m.ckpt': cannot create a file in its folder '$dir/ro': Read-only file system" \
    "$dir/ro.txt" || { cat "$dir/ro.txt"; fail "read-only folder: status $status"; }
else
  echo "crash_test: SKIPPED the full-disk and read-only cases: cannot mount a tmpfs ($(cat "$dir/mount_err.txt"))"
fi

# --- The same without privileges: a file size limit (ulimit -f) smaller than a checkpoint, on a run
# resumed from one saved at step 10. train ignores SIGXFSZ itself, so the write fails with EFBIG
# instead of the signal killing the program.
"$train" "${small[@]}" --steps 10 --out "$dir/limit.ckpt" > /dev/null 2>&1 || fail "the step-10 run failed"
status=0
(ulimit -f $((size / 2048)); exec "$train" --data "$dir/text.txt" --resume "$dir/limit.ckpt" --steps 40 \
  --save-interval 5 "${quiet[@]}") > "$dir/limit.log" 2>&1 || status=$?
[ "$status" -eq 1 ] || { cat "$dir/limit.log"; fail "file size limit: exit status $status, expected 1"; }
grep -q "train: error: cannot save checkpoint '$dir/limit.ckpt': .*File too large; '$dir/limit.ckpt' keeps its previous contents" \
  "$dir/limit.log" || { cat "$dir/limit.log"; fail "file size limit: no clear error"; }
require_valid "$dir/limit.ckpt" "file size limit"
[ "$(checkpoint_step "$dir/limit.ckpt")" = 10 ] || fail "file size limit: the step-10 checkpoint was replaced"
[ -z "$(compgen -G "$dir/limit.ckpt.tmp.*")" ] || fail "file size limit: temporary file left behind"
echo "crash_test: file size limit: clear error, step-10 checkpoint intact"

# --- Folders that cannot hold the checkpoint: refused before training starts.
expect_out_error() {  # expect_out_error <out> <message>
  local status=0
  "$train" "${small[@]}" --out "$1" > "$dir/out.txt" 2> "$dir/err.txt" || status=$?
  [ "$status" -eq 1 ] && grep -qF -- "$2" "$dir/err.txt" || { cat "$dir/err.txt"; fail "--out $1: status $status"; }
  ! grep -q '^step' "$dir/out.txt" || fail "--out $1: trained before failing"
}
expect_out_error "$dir/text.txt/m.ckpt" "cannot write checkpoint '$dir/text.txt/m.ckpt': '$dir/text.txt' is not a folder"
expect_out_error "$dir/missing/m.ckpt" "cannot write checkpoint '$dir/missing/m.ckpt': its folder '$dir/missing': No such file or directory"
expect_out_error "$dir" "cannot write checkpoint '$dir': it is a folder"
if [ "$(id -u)" -ne 0 ]; then  # root ignores permission bits (the read-only mount above stands in)
  mkdir "$dir/locked" && chmod 555 "$dir/locked"
  expect_out_error "$dir/locked/m.ckpt" "is not writable: Permission denied"
fi

# --- A run that diverges (a learning rate of 1e6 without clipping: the weights blow up within a few
# updates) stops at the first non-finite loss, with status 3, and does not save over the last good
# checkpoint; --skip-nonfinite N skips N such steps first.
diverge=("${small[@]}" --steps 40 --lr 1e6 --warmup 0 --clip 0 --save-interval 1 --overwrite)
for skip in 0 2; do
  status=0
  "$train" "${diverge[@]}" --skip-nonfinite $skip --out "$dir/nan.ckpt" > "$dir/nan.log" 2>&1 || status=$?
  [ "$status" -eq 3 ] || { cat "$dir/nan.log"; fail "divergence: exit status $status, expected 3"; }
  bad=$(sed -n 's/^train: error: Trainer: step \([0-9]*\) has a non-finite loss.*/\1/p' "$dir/nan.log")
  [ -n "$bad" ] && [ "$bad" -gt 1 ] || { cat "$dir/nan.log"; fail "divergence: no clear message naming the step"; }
  grep -q "its update was not applied. $skip non-finite steps were skipped before, skip_nonfinite allows $skip" \
    "$dir/nan.log" || { cat "$dir/nan.log"; fail "divergence: the message does not count the skips"; }
  grep -q "stopped without saving: '$dir/nan.ckpt' holds step $((bad - 1))" "$dir/nan.log" ||
    { cat "$dir/nan.log"; fail "divergence: no note on the checkpoint"; }
  [ "$(grep -c "^train: step $bad skipped: loss" "$dir/nan.log")" -eq $skip ] ||
    { cat "$dir/nan.log"; fail "divergence: expected $skip skipped steps"; }
  # (Loaded by a resume, not by generate: the last weights are finite but already huge, so their
  # logits may not be; the point is that the file is the last good one, whole.)
  [ "$(checkpoint_step "$dir/nan.ckpt")" = $((bad - 1)) ] || fail "divergence: the step-$((bad - 1)) checkpoint was replaced"
done
echo "crash_test: divergence: stopped at step $bad with status 3, the step-$((bad - 1)) checkpoint intact (also after 2 skips)"
# --- Writes that fail for any reason (the seam fails one call on the temporary file of a save).
if command -v cc > /dev/null && cc -shared -fPIC -O1 -o "$dir/fail_writes.so" "$(dirname "$0")/fault/fail_writes.c" -ldl; then
  "$train" "${small[@]}" --steps 10 --out "$dir/io.ckpt" > /dev/null 2>&1 || fail "the step-10 run failed"
  cp "$dir/io.ckpt" "$dir/io_keep.ckpt"
  for call in write fsync close; do
    status=0
    SEQGEN_FAIL=$call LD_PRELOAD="$dir/fail_writes.so" "$train" --data "$dir/text.txt" --resume "$dir/io.ckpt" --steps 12 \
      "${quiet[@]}" > "$dir/io.log" 2>&1 || status=$?
    [ "$status" -eq 1 ] || { cat "$dir/io.log"; fail "failing $call: exit status $status, expected 1"; }
    grep -q "train: error: cannot save checkpoint '$dir/io.ckpt': .*Input/output error; '$dir/io.ckpt' keeps its previous contents" \
      "$dir/io.log" || { cat "$dir/io.log"; fail "failing $call: no clear error"; }
    cmp -s "$dir/io.ckpt" "$dir/io_keep.ckpt" || fail "failing $call: the previous checkpoint changed"
    [ -z "$(compgen -G "$dir/io.ckpt.tmp.*")" ] || fail "failing $call: temporary file left behind"
  done
  echo "crash_test: failing write, fsync and close: clear error, step-10 checkpoint intact, no temporary file"
else
  echo "crash_test: SKIPPED the failing-write cases: no C compiler to build the LD_PRELOAD seam"
fi

# --- SIGINT during a long final sample: stopped within a second, the checkpoint saved before it.
"$train" "${small[@]}" --steps 2 --eval-interval 0 --final-eval-windows 2 --sample-tokens 1000000 --threads 1 \
  --out "$dir/sample.ckpt" > "$dir/sample.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '^--- sample ---' "$dir/sample.log" 2> /dev/null && break; sleep 0.05; done
grep -q '^--- sample ---' "$dir/sample.log" || fail "the final sample did not start"
kill -INT $pid
start=$(date +%s%N)
status=0
wait $pid || status=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$status" -eq 130 ] || { cat "$dir/sample.log"; fail "SIGINT during the sample: status $status, expected 130"; }
[ "$ms" -lt 1000 ] || fail "SIGINT during the sample: stopped after $ms ms"
require_valid "$dir/sample.ckpt" "SIGINT during the sample"
echo "crash_test: SIGINT during a 1,000,000-token sample: stopped in $ms ms, status 130, checkpoint valid"

# --- A memory limit (ulimit -v, 300 MB) smaller than a model: refused by the budget, not bad_alloc.
status=0
(ulimit -v 300000; exec "$train" --data "$dir/text.txt" --channels 1024 --layers 8 --heads 8 -T 64 -B 8 --steps 1 \
  "${quiet[@]}" --out "$dir/big.ckpt") > "$dir/big.log" 2>&1 || status=$?
[ "$status" -eq 1 ] || { cat "$dir/big.log"; fail "ulimit -v: status $status, expected 1"; }
grep -q "^train: error: training this model at --batch 8 --seq-len 64 needs .* available (lower --batch" "$dir/big.log" ||
  { cat "$dir/big.log"; fail "ulimit -v: no memory budget message"; }
echo "crash_test: ulimit -v 300 MB: the model's memory refused with a message"
echo "crash_test: all passed"
