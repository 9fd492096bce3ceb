#!/usr/bin/env bash
# Data-parallel training on MPI, end to end: mpi_test.sh MPIEXEC TEST_MPI [TRAIN]
#   1. test_mpi's cases on 2 and 3 ranks (N ranks with B/N each == one process with B; resume);
#   2. a rank that throws ends the whole job at once, non-zero, with its message;
#   3. with TRAIN: train under mpirun on 2 ranks gives the losses of one process, resumes on 2
#      ranks bit-identically and on 1 process; the same with --zero (sharded AdamW moments), whose
#      checkpoints are those of a run without it; a rank whose --data is missing ends the job.
set -u
MPIEXEC=$1 TEST=$2 TRAIN=${3:-}
MPIRUN=("$MPIEXEC" --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }

for np in 2 3; do
  echo "== test_mpi on $np ranks"
  "${MPIRUN[@]}" -np $np "$TEST" || fail "test_mpi on $np ranks"
done

echo "== a rank that throws ends the job"
start=$(date +%s)
err=$(timeout 30 "${MPIRUN[@]}" -np 3 "$TEST" --throw-on-rank 1 2>&1 >/dev/null)
status=$?
took=$(( $(date +%s) - start ))
[ $status -ne 0 ] || fail "the job ended with status 0"
[ $status -ne 124 ] || fail "the job hung (killed by timeout after 30 s)"
grep -q "rank 1 of 3: cannot read 'shard-7.txt' (injected failure)" <<<"$err" || fail "the message is missing: $err"
[ $took -le 10 ] || fail "the job took $took s to end"
echo "ended in ${took} s with status $status"

[ -n "$TRAIN" ] || { echo "SKIPPED: train under mpirun (the examples are not built)"; exit 0; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 -c "
import random
random.seed(1)
words = 'the of and to in is was he that it for on with as his by at from her had not but'.split()
print(' '.join(random.choice(words) for _ in range(6000)))" >"$dir/text.txt"
losses() { grep -o 'loss [0-9.]*' "$1" | grep -v val; }
for model in gpt lstm; do
  # A constant learning rate (--min-lr = --lr, no warm-up): a 6-step run is the first half of a 12-step one.
  common=(--data "$dir/text.txt" --model $model --layers 1 --channels 32 --batch 4 --seq-len 16 --eval-interval 0
          --lr 1e-3 --min-lr 1e-3 --warmup 0 --overwrite
          --sample-tokens 0 --log-interval 1 --no-metrics --threads 1 --final-eval-windows 4)
  [ $model = gpt ] && common+=(--heads 2)
  echo "== train --model $model: 2 ranks against 1 process"
  "$TRAIN" "${common[@]}" --steps 12 --out "$dir/one.ckpt" >"$dir/one.log" 2>&1 || fail "train on 1 process"
  "${MPIRUN[@]}" -np 2 "$TRAIN" "${common[@]}" --steps 12 --out "$dir/two.ckpt" >"$dir/two.log" 2>&1 ||
    { cat "$dir/two.log"; fail "train on 2 ranks"; }
  [ "$(grep -c '^final:' "$dir/two.log")" -eq 1 ] || fail "expected one final: line from rank 0 only"
  python3 - "$dir/one.log" "$dir/two.log" <<'PY' || fail "2 ranks do not give the losses of 1 process"
import re, sys
a, b = ([float(x) for x in re.findall(r"^step \d+/\d+ loss ([0-9.]+)", open(f).read(), re.M)] for f in sys.argv[1:])
assert len(a) == len(b) == 12, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x - y) <= 2e-4 * x, (x, y)  # the printed 4 decimals
PY
  echo "== train --model $model: stop at 6 on 2 ranks, resume on 2 ranks and on 1"
  "${MPIRUN[@]}" -np 2 "$TRAIN" "${common[@]}" --steps 6 --out "$dir/six.ckpt" >/dev/null 2>&1 || fail "6-step run"
  cp "$dir/six.ckpt" "$dir/six_b.ckpt"
  "${MPIRUN[@]}" -np 2 "$TRAIN" --data "$dir/text.txt" --resume "$dir/six.ckpt" --steps 12 --eval-interval 0 \
    --sample-tokens 0 --no-metrics --threads 1 --final-eval-windows 4 >"$dir/resumed2.log" 2>&1 || fail "resume on 2 ranks"
  cmp -s "$dir/six.ckpt" "$dir/two.ckpt" || fail "resuming on 2 ranks is not bit-identical to the straight run"
  "$TRAIN" --data "$dir/text.txt" --resume "$dir/six_b.ckpt" --steps 12 --eval-interval 0 --sample-tokens 0 \
    --no-metrics --threads 1 --final-eval-windows 4 --log-interval 1 >"$dir/resumed1.log" 2>&1 || fail "resume on 1 process"
  python3 - "$dir/two.log" "$dir/resumed1.log" <<'PY' || fail "resuming on 1 process departs from the 2-rank run"
import re, sys
def after6(f):
    return [float(l) for s, l in re.findall(r"^step (\d+)/\d+ loss ([0-9.]+)", open(f).read(), re.M) if int(s) > 6]
a, b = after6(sys.argv[1]), after6(sys.argv[2])
assert len(a) == len(b) == 6, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x - y) <= 2e-4 * x, (x, y)
PY
  echo "== train --model $model --zero: 2 ranks against 1 process, resume on 2 ranks with and without --zero"
  "${MPIRUN[@]}" -np 2 "$TRAIN" "${common[@]}" --zero --steps 12 --out "$dir/zero.ckpt" >"$dir/zero.log" 2>&1 ||
    { cat "$dir/zero.log"; fail "train --zero on 2 ranks"; }
  python3 - "$dir/one.log" "$dir/zero.log" <<'PY' || fail "2 ranks with --zero do not give the losses of 1 process"
import re, sys
a, b = ([float(x) for x in re.findall(r"^step \d+/\d+ loss ([0-9.]+)", open(f).read(), re.M)] for f in sys.argv[1:])
assert len(a) == len(b) == 12, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x - y) <= 2e-4 * x, (x, y)
PY
  "${MPIRUN[@]}" -np 2 "$TRAIN" "${common[@]}" --zero --steps 6 --out "$dir/zero6.ckpt" >/dev/null 2>&1 || fail "6-step --zero run"
  cp "$dir/zero6.ckpt" "$dir/zero6_b.ckpt"
  "${MPIRUN[@]}" -np 2 "$TRAIN" --data "$dir/text.txt" --resume "$dir/zero6.ckpt" --zero --steps 12 --eval-interval 0 \
    --sample-tokens 0 --no-metrics --threads 1 --final-eval-windows 4 >/dev/null 2>&1 || fail "resume --zero on 2 ranks"
  cmp -s "$dir/zero6.ckpt" "$dir/zero.ckpt" || fail "resuming with --zero on 2 ranks is not bit-identical to the straight run"
  "${MPIRUN[@]}" -np 2 "$TRAIN" --data "$dir/text.txt" --resume "$dir/zero6_b.ckpt" --steps 12 --eval-interval 0 \
    --sample-tokens 0 --no-metrics --threads 1 --final-eval-windows 4 --log-interval 1 >"$dir/unzero.log" 2>&1 ||
    fail "resume a --zero checkpoint on 2 ranks without --zero"
  python3 - "$dir/two.log" "$dir/unzero.log" <<'PY' || fail "a --zero checkpoint resumed without --zero departs from the run"
import re, sys
def after6(f):
    return [float(l) for s, l in re.findall(r"^step (\d+)/\d+ loss ([0-9.]+)", open(f).read(), re.M) if int(s) > 6]
a, b = after6(sys.argv[1]), after6(sys.argv[2])
assert len(a) == len(b) == 6, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x - y) <= 2e-4 * x, (x, y)
PY
done
echo "== a rank whose --data is missing ends the job"
start=$(date +%s)
err=$(OMPI_DATA="$dir/text.txt" timeout 30 "${MPIRUN[@]}" -np 3 -x OMPI_DATA bash -c \
  '[ "$OMPI_COMM_WORLD_RANK" = 2 ] && OMPI_DATA=/nonexistent/shard.txt; exec "$0" --data "$OMPI_DATA" "$@"' \
  "$TRAIN" --model gpt --layers 1 --channels 32 --heads 2 --batch 6 --seq-len 16 --steps 100000 --eval-interval 0 \
  --sample-tokens 0 --no-metrics --threads 1 --out "$dir/bad.ckpt" 2>&1 >/dev/null)
status=$?
took=$(( $(date +%s) - start ))
[ $status -ne 0 ] || fail "the job ended with status 0"
[ $status -ne 124 ] || fail "the job hung (killed by timeout after 30 s)"
grep -q "/nonexistent/shard.txt" <<<"$err" || fail "the message of rank 2 is missing: $err"
[ $took -le 10 ] || fail "the job took $took s to end"
echo "ended in ${took} s with status $status"
echo "== SIGTERM to mpirun: every rank stops at the same step, rank 0 saves once, the run resumes"
"${MPIRUN[@]}" -np 2 "$TRAIN" --data "$dir/text.txt" --model gpt --layers 1 --channels 32 --heads 2 --batch 4 \
  --seq-len 16 --steps 1000000 --eval-interval 0 --sample-tokens 0 --no-metrics --threads 1 --out "$dir/sig.ckpt" \
  >"$dir/sig.log" 2>"$dir/sig.err" &
pid=$!
for _ in $(seq 100); do grep -q '^step ' "$dir/sig.log" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
wait $pid  # Open MPI's mpirun ends with status 1 after forwarding the signal, whatever the ranks return
[ "$(grep -c 'SIGTERM received, checkpoint saved' "$dir/sig.err")" -eq 1 ] || { cat "$dir/sig.err"; fail "expected one save message"; }
step=$(sed -n 's/.*checkpoint saved to .* at step \([0-9]*\)$/\1/p' "$dir/sig.err")
"$TRAIN" --data "$dir/text.txt" --resume "$dir/sig.ckpt" --steps $((step + 2)) --eval-interval 0 --sample-tokens 0 \
  --no-metrics --threads 1 --final-eval-windows 2 >"$dir/sig2.log" 2>&1 || fail "the checkpoint saved on SIGTERM does not resume"
grep -q "^final: steps=$((step + 2)) " "$dir/sig2.log" || fail "the resumed run did not reach step $((step + 2))"
echo "mpi_test.sh: all passed"
