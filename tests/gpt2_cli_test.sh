#!/usr/bin/env bash
# The programs on GPT-2 files (tests/gpt2_reference.py writes a small random GPT-2 and a toy GPT-2
# tokenizer of its 300 tokens): generate from llm.c's .bin with llm.c's tokenizer.bin and from
# model.safetensors with encoder.json + vocab.bpe (the same greedy text), train --init to fine-tune
# and save a seqgen checkpoint that resumes exactly, export --format llmc|safetensors back, and the
# errors and refusals to overwrite.
#
#   tests/gpt2_cli_test.sh <train> <generate> <export> [source dir]
#
# Exit 77 (ctest: skipped) when /usr/bin/python3 has no torch (Debian: python3-torch).
set -euo pipefail
train=$(realpath "$1")
generate=$(realpath "$2")
export_model=$(realpath "$3")
src=$(realpath "${4:-$(dirname "$0")/..}")
fail() { echo "gpt2_cli_test: FAIL: $*" >&2; exit 1; }
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  echo "gpt2_cli_test: SKIP: /usr/bin/python3 cannot import torch and numpy (apt-get install python3-torch)"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# expect_error MESSAGE COMMAND...: the command fails with status 1 and MESSAGE on stderr.
expect_error() {
  local want=$1 status=0
  shift
  "$@" > /dev/null 2> "$dir/err.txt" || status=$?
  [ "$status" -eq 1 ] || fail "'$*' exited $status, expected 1: $(cat "$dir/err.txt")"
  grep -qF -- "$want" "$dir/err.txt" || fail "'$*' said '$(cat "$dir/err.txt")', expected '$want'"
}

/usr/bin/python3 "$src/tests/gpt2_reference.py" "$dir" > /dev/null
cd "$dir"

# generate: both files, both tokenizers, the same greedy continuation.
g=(--prompt "the other one" --tokens 24 --temperature 0 --threads 1)
"$generate" --model model.bin --tokenizer tokenizer.bin "${g[@]}" > a.txt 2> a_err.txt || fail "generate model.bin: $(cat a_err.txt)"
"$generate" --model model.safetensors --encoder-json encoder.json --vocab-bpe vocab.bpe "${g[@]}" > b.txt 2> /dev/null ||
  fail "generate model.safetensors failed"
cmp -s a.txt b.txt || fail "model.bin and model.safetensors generate different text: $(cat a.txt) / $(cat b.txt)"
grep -q '^the other one' a.txt || fail "the output does not start with the prompt: $(cat a.txt)"
grep -q 'generation 24 tokens' a_err.txt || fail "no speed line: $(cat a_err.txt)"
expect_error "holds no tokenizer" "$generate" --model model.bin --prompt x
expect_error "not both" "$generate" --model model.bin --tokenizer tokenizer.bin --encoder-json encoder.json --prompt x
expect_error "--encoder-json and --vocab-bpe go together" "$generate" --model model.bin --encoder-json encoder.json
head -c 5000 model.bin > truncated.bin
expect_error "describes" "$generate" --model truncated.bin --tokenizer tokenizer.bin

# train --init: fine-tune, then resume exactly (a constant learning rate, so that the schedule of
# a 6-step run and of a 3-step run resumed to 6 are the same).
for i in $(seq 80); do echo "the other one is there and then the rest of them ate the ice"; done > text.txt
t=(--data text.txt -T 16 -B 2 --lr 1e-3 --min-lr 1e-3 --warmup 0 --eval-interval 0 --eval-windows 2
   --sample-tokens 0 --threads 1 --no-metrics)
"$train" "${t[@]}" --init model.bin --llmc-tokenizer tokenizer.bin --steps 6 --out ft6.ckpt > ft6.txt 2>&1 ||
  fail "train --init failed: $(cat ft6.txt)"
grep -q "^init: 'model.bin' (llm.c), GPT-2 of C = 32, L = 2, NH = 4, V = 300, context 16" ft6.txt ||
  fail "no init line: $(cat ft6.txt)"
grep -q '^final: steps=6 ' ft6.txt || fail "no final line: $(cat ft6.txt)"
"$train" "${t[@]}" --init model.safetensors --encoder-json encoder.json --vocab-bpe vocab.bpe --steps 3 \
  --out ft3.ckpt > ft3.txt 2>&1 || fail "train --init model.safetensors failed: $(cat ft3.txt)"
"$train" "${t[@]}" --resume ft3.ckpt --steps 6 > ft3b.txt 2>&1 || fail "resume failed: $(cat ft3b.txt)"
"$export_model" --checkpoint ft6.ckpt --format llmc --out ft6.bin > /dev/null || fail "export --format llmc failed"
"$export_model" --checkpoint ft3.ckpt --format llmc --out ft3.bin > /dev/null || fail "export --format llmc failed"
cmp -s ft6.bin ft3.bin || fail "6 steps and 3 steps resumed to 6 give different weights"
cmp -s ft6.bin model.bin && fail "fine-tuning did not change the weights"
# The fine-tuned checkpoint carries the tokenizer: generate needs no tokenizer file, and the
# llm.c and safetensors exports of it generate the same text.
"$generate" --checkpoint ft6.ckpt "${g[@]}" > c.txt 2> /dev/null || fail "generate from the fine-tuned checkpoint failed"
"$generate" --model ft6.bin --tokenizer tokenizer.bin "${g[@]}" > d.txt 2> /dev/null || fail "generate ft6.bin failed"
"$export_model" --checkpoint ft6.ckpt --format safetensors --out ft6.safetensors > /dev/null || fail "export safetensors failed"
"$generate" --model ft6.safetensors --tokenizer tokenizer.bin "${g[@]}" > e.txt 2> /dev/null || fail "generate ft6.safetensors failed"
cmp -s c.txt d.txt && cmp -s c.txt e.txt || fail "the checkpoint and its exports generate different text"
# Read back outside seqgen: the script's own parsers (Hugging Face's safetensors rules, llm.c's
# layout) find the same weights in both exports.
/usr/bin/python3 "$src/tests/gpt2_reference.py" --read ft6.safetensors ft6.bin > read.txt 2>&1 ||
  fail "the exports do not read back in PyTorch: $(cat read.txt)"
# llm.c -> safetensors -> llm.c: the same bytes (the padded rows of model.bin hold junk, so compare
# with a seqgen-written .bin).
"$export_model" --checkpoint model.bin --format safetensors --out conv.safetensors > /dev/null || fail "llmc -> safetensors failed"
"$export_model" --checkpoint conv.safetensors --format llmc --out conv.bin > /dev/null || fail "safetensors -> llmc failed"
"$export_model" --checkpoint conv.bin --format llmc --out conv2.bin > /dev/null || fail "llmc -> llmc failed"
cmp -s conv.bin conv2.bin || fail "llm.c -> safetensors -> llm.c changed the bytes"
"$export_model" --checkpoint model_bf16.bin --format llmc --bfloat16 --out conv16.bin > /dev/null || fail "bf16 export failed"
cmp -s conv16.bin model_bf16.bin || fail "llm.c version 5 written again differs from the script's"

# Options that do not fit, and files that must not be replaced.
expect_error "--channels comes from --init" "$train" "${t[@]}" --init model.bin --llmc-tokenizer tokenizer.bin --channels 64 --out x.ckpt
expect_error "--init starts a new run" "$train" "${t[@]}" --init model.bin --llmc-tokenizer tokenizer.bin --resume ft6.ckpt
expect_error "give the tokenizer of an --init" "$train" "${t[@]}" --llmc-tokenizer tokenizer.bin --out x.ckpt
expect_error "--seq-len 32 exceeds the context 16" "$train" --data text.txt -T 32 --init model.bin --llmc-tokenizer tokenizer.bin --out x.ckpt
expect_error "apply to GPT-2 files" "$generate" --checkpoint ft6.ckpt --tokenizer tokenizer.bin
expect_error "exists: replace it with --overwrite" "$export_model" --checkpoint ft6.ckpt --format llmc --out ft3.bin
expect_error "exists and is not a llm.c file" "$export_model" --checkpoint ft6.ckpt --format llmc --out text.txt
expect_error "exists and is not a safetensors file" "$export_model" --checkpoint ft6.ckpt --format safetensors --out ft3.bin
"$export_model" --checkpoint ft6.ckpt --format llmc --out ft3.bin --overwrite > /dev/null || fail "--overwrite refused"
cmp -s ft6.bin ft3.bin || fail "--overwrite did not replace the file"
expect_error "float32 or bfloat16" "$export_model" --checkpoint ft6.ckpt --format llmc --float16 --out y.bin
echo "gpt2_cli_test: OK"
