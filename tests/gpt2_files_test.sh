#!/usr/bin/env bash
# GPT-2's files against an independent reference: tests/gpt2_reference.py (PyTorch, a GPT-2 forward
# written from the paper) writes a small random GPT-2 as Hugging Face's model.safetensors (F32, and
# BF16 with the "transformer." prefix and a tied lm_head) and as llm.c's .bin (version 3 float32,
# version 5 bfloat16), with its logits and loss; gpt2_files_check loads every file with seqgen and
# compares (1e-5 relative), checks that the two loaders agree bit for bit and that writing and
# reading each format again is bit-identical.
#
#   tests/gpt2_files_test.sh path/to/gpt2_files_check [source dir] [--124M]
#
# --124M: the same at GPT-2 124M's shape (random weights generated here, ~1 GB of files in a
# temporary folder, about a minute): both loaders, a 64-token prompt's logits, 32 decoded tokens,
# one training step. Not part of ctest; the README documents it.
#
# Exit 77 (ctest: skipped) when /usr/bin/python3 has no torch (Debian: python3-torch); any other
# failure fails the test.
set -euo pipefail
check=$(realpath "$1")
src=$(realpath "${2:-$(dirname "$0")/..}")
shape=small
[[ "${3:-}" == "--124M" ]] && shape=124M

if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  source "$src/scripts/deps.sh"
  ensure_packages python3-torch python3-numpy 2>/dev/null || true
  if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
    echo "gpt2_files_test: SKIP: /usr/bin/python3 cannot import torch and numpy (apt-get install python3-torch)"
    exit 77
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$src/tests/gpt2_reference.py" "$tmp" --shape "$shape"
if [[ $shape == 124M ]]; then
  "$check" "$tmp" --124M
else
  "$check" "$tmp"
fi
