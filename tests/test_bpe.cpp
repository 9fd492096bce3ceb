#include <seqgen/data/bpe.hpp>
#include <seqgen/data/bpe_train.hpp>
#include <seqgen/data/gpt2_vocab.hpp>
#include <seqgen/data/pretokenize.hpp>
#include <seqgen/data/tokenizer.hpp>
#include <seqgen/data/utf8_stream.hpp>

#include <map>
#include <set>
#include <random>

#include "test_util.hpp"

namespace test_bpe {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

std::vector<std::string> pieces_of(std::string_view text, PreSplit split = PreSplit::gpt2) {
  std::vector<std::string> out;
  Pretokenizer(split).each_piece(text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

std::string random_bytes(std::mt19937& rng, std::size_t n, int alphabet = 256) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() % static_cast<unsigned>(alphabet));
  return s;
}

// Text that mixes the cases the split pattern tells apart.
std::string mixed_text(std::mt19937& rng, std::size_t words) {
  static const std::vector<std::string> parts = {
      "the", " the", " cat", "'s", "'re", " I'm", "  ", "   ", "\n", "\n\n", "\t", " 42", "2024", " --", "!!",
      " café", " naïve", " 日本語", " 😀", " Ωμέγα", "x²", "\xC2\xA0", " don't", ",", ".", "\xFF", "\xE2\x82", "\0"};
  std::string s;
  for (std::size_t i = 0; i < words; ++i) s += parts[rng() % parts.size()];
  return s;
}

// The reference trainer: recounts every pair of every word before each merge (no bookkeeping to
// get wrong), with the same rule: highest count, then smallest (left, right).
std::vector<BpeMerge> naive_train(std::string_view text, Index vocab_size, PreSplit split) {
  std::map<std::string, std::int64_t> distinct;
  for (const std::string& p : pieces_of(text, split)) ++distinct[p];
  std::vector<std::pair<std::vector<Token>, std::int64_t>> words;
  for (const auto& [p, c] : distinct) {
    std::vector<Token> w;
    for (unsigned char b : p) w.push_back(b);
    words.push_back({w, c});
  }
  std::vector<BpeMerge> merges;
  while (Index(merges.size()) + 256 < vocab_size) {
    std::map<std::pair<Token, Token>, std::int64_t> counts;
    for (const auto& [w, c] : words)
      for (std::size_t i = 0; i + 1 < w.size(); ++i) counts[{w[i], w[i + 1]}] += c;
    std::pair<Token, Token> best{-1, -1};
    std::int64_t best_count = 1;  // min_count 2
    for (const auto& [p, c] : counts)
      if (c > best_count) best_count = c, best = p;  // std::map visits pairs in increasing order: first wins ties
    if (best.first < 0) break;
    const Token x = Token(256 + merges.size());
    merges.push_back({best.first, best.second, x});
    for (auto& [w, c] : words) {
      std::vector<Token> out;
      for (std::size_t i = 0; i < w.size();)
        if (i + 1 < w.size() && w[i] == best.first && w[i + 1] == best.second) out.push_back(x), i += 2;
        else out.push_back(w[i++]);
      w = out;
    }
  }
  return merges;
}

std::array<Token, 256> identity_bytes() {
  std::array<Token, 256> ids{};
  for (int i = 0; i < 256; ++i) ids[i] = i;
  return ids;
}

void put(std::string& blob, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) blob += static_cast<char>((v >> (8 * k)) & 0xFF);
}

}  // namespace

TEST_CASE("pretokenize: GPT-2's pattern cuts text as the reference encoder does", "[bpe]") {
  using V = std::vector<std::string>;
  CHECK(pieces_of("Hello world") == V{"Hello", " world"});
  CHECK(pieces_of("they're here, I'm sure") == V{"they", "'re", " here", ",", " I", "'m", " sure"});
  // The look-ahead: of a run of spaces before a word, the last one goes with the word.
  CHECK(pieces_of("a   b") == V{"a", "  ", " b"});
  CHECK(pieces_of("end   ") == V{"end", "   "});
  CHECK(pieces_of("x\n\ny") == V{"x", "\n", "\n", "y"});
  CHECK(pieces_of("2024 was 12.5%") == V{"2024", " was", " 12", ".", "5", "%"});
  CHECK(pieces_of("'S 's") == V{"'", "S", " '", "s"});  // only lower-case contractions, as GPT-2
  CHECK(pieces_of("héllo wörld 日本語") == V{"héllo", " wörld", " 日本語"});
  CHECK(pieces_of("x² ½") == V{"x", "²", " ½"});  // \p{N} includes No
  CHECK(pieces_of("a\xC2\xA0" "b") == V{"a", "\xC2\xA0", "b"});  // U+00A0 is white space, but not " "
  CHECK(pieces_of("a\xEF\xBB\xBF" "b") == V{"a", "\xEF\xBB\xBF", "b"});  // U+FEFF is \s in ECMAScript
  CHECK(pieces_of(" 😀!") == V{" 😀!"});
  // Invalid UTF-8 matches nothing: each run is a piece of its own.
  CHECK(pieces_of("a\xFF\xFE" "b") == V{"a", "\xFF\xFE", "b"});
  CHECK(pieces_of(" \xFF") == V{" ", "\xFF"});
  CHECK(pieces_of("ab\xE2\x82") == V{"ab", "\xE2\x82"});
  CHECK(pieces_of(std::string("a\0b", 3)) == V{"a", std::string("\0", 1), "b"});
  CHECK(pieces_of("abc def", PreSplit::none) == V{"abc def"});
  CHECK(pieces_of("").empty());
}

TEST_CASE("pretokenize: the pieces of any bytes are the bytes", "[bpe]") {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    const std::string text = trial % 2 ? random_bytes(rng, rng() % 300) : mixed_text(rng, rng() % 60);
    std::string joined;
    for (const std::string& p : pieces_of(text)) {
      REQUIRE(!p.empty());
      joined += p;
    }
    REQUIRE(joined == text);
  }
}

TEST_CASE("bpe: merges apply by rank, all occurrences of a pair left to right", "[bpe]") {
  // 'a' 'b' 'c' are bytes 97..99; merges: (b, c) -> 256 rank 0, (a, b) -> 257 rank 1, (a, a) -> 258 rank 2,
  // (256, 256) -> 259 rank 3.
  const BpeVocab v(260, identity_bytes(), {{98, 99, 256}, {97, 98, 257}, {97, 97, 258}, {256, 256, 259}}, {},
                   PreSplit::none, "test");
  std::vector<Token> w;
  for (bool heap : {false, true}) {
    v.merge_piece("abc", w, heap);
    CHECK(w == std::vector<Token>{97, 256});  // rank 0 first, then no (a, bc) rule
    v.merge_piece("aaaaa", w, heap);
    CHECK(w == std::vector<Token>{258, 258, 97});  // non-overlapping, from the left
    v.merge_piece("bcbcab", w, heap);
    CHECK(w == std::vector<Token>{259, 257});
    v.merge_piece("x", w, heap);
    CHECK(w == std::vector<Token>{120});
  }
  CHECK(v.token(259) == "bcbc");
  CHECK(v.rank(97, 98) == 1);
  CHECK(v.rank(98, 97) == -1);
}

TEST_CASE("bpe: the heap and the rescan give the same tokens on random vocabularies", "[bpe]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 30; ++trial) {
    // Random merges over a 4-letter alphabet, each of two tokens already made.
    std::vector<BpeMerge> merges;
    std::vector<Token> made = {'a', 'b', 'c', 'd'};
    std::set<std::pair<Token, Token>> used;
    while (merges.size() < 40) {
      const Token l = made[rng() % made.size()], r = made[rng() % made.size()];
      if (!used.insert({l, r}).second) continue;
      merges.push_back({l, r, Token(256 + merges.size())});
      made.push_back(merges.back().result);
    }
    const BpeVocab v(Index(256 + merges.size()), identity_bytes(), merges, {}, PreSplit::none, "test");
    std::vector<Token> a, b;
    for (int k = 0; k < 50; ++k) {
      std::string s;
      for (std::size_t n = rng() % 200; n > 0; --n) s += char('a' + rng() % 4);
      v.merge_piece(s, a, false);
      v.merge_piece(s, b, true);
      REQUIRE(a == b);
      std::string back;
      for (Token t : a) back += v.token(t);
      REQUIRE(back == s);
    }
  }
}

TEST_CASE("bpe: the incremental trainer makes the same merges as a recount per merge", "[bpe]") {
  std::mt19937 rng(3);
  for (PreSplit split : {PreSplit::gpt2, PreSplit::none}) {
    const std::string text = split == PreSplit::gpt2 ? mixed_text(rng, 3000) : mixed_text(rng, 150);
    BpeTrainOptions o;
    o.vocab_size = 256 + 120;
    o.split = split;
    const BpeVocab v = train_bpe(text, o);
    const std::vector<BpeMerge> expected = naive_train(text, o.vocab_size, split);
    REQUIRE(v.merges().size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      INFO("merge " << i);
      REQUIRE(v.merges()[i].left == expected[i].left);
      REQUIRE(v.merges()[i].right == expected[i].right);
    }
  }
}

TEST_CASE("bpe: training stops when no pair repeats, and counts ties deterministically", "[bpe]") {
  // "abab": pairs ab x2, ba x1 -> merge ab; then (ab, ab) x1 < 2: stop.
  BpeTrainOptions o;
  o.vocab_size = 300;
  o.split = PreSplit::none;
  const BpeVocab v = train_bpe("abab", o);
  REQUIRE(v.vocab_size() == 257);
  CHECK(v.token(256) == "ab");
  // Ties: "xy" and "ab" both twice: the smaller pair (a, b) first.
  const BpeVocab t = train_bpe("xyxyabab", o);
  REQUIRE(t.merges().size() >= 2);
  CHECK(t.token(256) == "ab");
  CHECK(t.token(257) == "xy");
  o.vocab_size = 255;
  SEQGEN_THROWS_WITH(train_bpe("abab", o), ConfigError, "vocab_size 255 is not in [256, 65536]");
}

TEST_CASE("bpe: decode(encode(x)) == x for any bytes, and encoding compresses the training text", "[bpe]") {
  std::mt19937 rng(11);
  const std::string train = mixed_text(rng, 20000);
  BpeTrainOptions o;
  o.vocab_size = 400;
  const Tokenizer tok = Tokenizer::bpe(train_bpe(train, o));
  REQUIRE(tok.kind() == Tokenizer::Kind::bpe);
  REQUIRE(tok.vocab_size() == 400);
  const std::vector<Token> ids = tok.encode(train);
  CHECK(tok.decode(ids) == train);
  CHECK(double(ids.size()) < 0.5 * double(train.size()));
  for (int trial = 0; trial < 100; ++trial) {
    const std::string s = trial % 2 ? random_bytes(rng, rng() % 500) : mixed_text(rng, rng() % 100);
    const std::vector<Token> encoded = tok.encode(s);
    REQUIRE(tok.decode(encoded) == s);
  }
  // A long piece (one word of 5000 letters) goes through the heap and still round-trips.
  const std::string longword(5000, 'e');
  const std::vector<Token> long_ids = tok.encode(longword);
  CHECK(tok.decode(long_ids) == longword);
}

TEST_CASE("bpe: the tokenizer blob round-trips, and version 1 blobs still load", "[bpe]") {
  std::mt19937 rng(5);
  BpeTrainOptions o;
  o.vocab_size = 400;
  const BpeVocab v = train_bpe(mixed_text(rng, 5000), o);
  const BpeVocab with_special(Index(v.vocab_size() + 1), v.byte_ids(), v.merges(),
                              {{Token(v.vocab_size()), "<|endoftext|>"}}, PreSplit::gpt2, "test");
  const Tokenizer tok = Tokenizer::bpe(with_special);
  const std::string blob = tok.to_bytes();
  const Tokenizer back = Tokenizer::from_bytes(blob);
  CHECK(back == tok);
  CHECK(back.to_bytes() == blob);
  CHECK(back.decode_token(Token(v.vocab_size())) == "<|endoftext|>");
  for (std::size_t n = 0; n < blob.size(); n += 1 + n / 64) {
    INFO("prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(Tokenizer::from_bytes(blob.substr(0, n)), FormatError);
  }
  REQUIRE_THROWS_AS(Tokenizer::from_bytes(blob + "x"), FormatError);
  // Layout: header, split, M, S, byte ids, merges, specials.
  REQUIRE(blob.size() == 16 + 12 + 4 * 256 + 12 * v.merges().size() + 8 + 13);
  // A version 1 characters blob (written before BPE) loads.
  std::string v1 = "SQTK";
  put(v1, 1);
  put(v1, 1);
  put(v1, 2);
  put(v1, 'a');
  put(v1, 'b');
  CHECK(Tokenizer::from_bytes(v1) == Tokenizer::characters("abba"));
  // Version 1 has no bpe kind.
  std::string v1bpe = "SQTK";
  put(v1bpe, 1);
  put(v1bpe, 2);
  put(v1bpe, 256);
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(v1bpe), FormatError, "unknown kind 2");
}

TEST_CASE("bpe: hostile tokenizer blobs are refused with the reason", "[bpe]") {
  // A valid blob with one merge (a, b) -> 256, then broken one field at a time.
  const auto blob = [](std::uint32_t V, std::uint32_t split, std::uint32_t M, std::uint32_t S,
                       std::vector<std::uint32_t> merge, std::string tail = "") {
    std::string b = "SQTK";
    put(b, 2);
    put(b, 2);
    put(b, V);
    put(b, split);
    put(b, M);
    put(b, S);
    for (std::uint32_t i = 0; i < 256; ++i) put(b, i);
    for (std::uint32_t x : merge) put(b, x);
    return b + tail;
  };
  CHECK(Tokenizer::from_bytes(blob(257, 1, 1, 0, {97, 98, 256})).decode_token(256) == "ab");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(257, 1, 1, 0, {97, 300, 256})), FormatError,
                     "merge 0 names token id 300, outside the vocabulary [0, 257)");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(258, 1, 2, 0, {97, 257, 256, 97, 98, 257})), FormatError,
                     "merge 0 (97, 257) uses token 257, which is neither a byte nor the result of an earlier merge");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(258, 1, 1, 0, {97, 98, 256})), FormatError,
                     "token id 257 of 258 is defined by no byte, merge or special token");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(258, 1, 2, 0, {97, 98, 256, 97, 98, 257})), FormatError,
                     "merge 1 (97, 98) repeats an earlier merge of the same pair");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(258, 1, 2, 0, {97, 98, 256, 99, 100, 256})), FormatError,
                     "merge 1 makes token 256, which is already defined");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(257, 7, 1, 0, {97, 98, 256})), FormatError, "unknown pre-split 7");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(0xFFFFFFFF, 1, 1, 0, {97, 98, 256})), FormatError,
                     "bpe vocabulary size 4294967295 is not in [256, 65536]");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(65536, 1, 60000, 0, {97, 98, 256})), FormatError,
                     "60000 merges need 720000 bytes, the blob has 12 left");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(258, 1, 1, 1, {97, 98, 256}, std::string("\x01\x01\0\0\xFF\xFF\xFF\x7F", 8))),
                     FormatError, "special token 0 has 2147483647 bytes, the blob has 0 left");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(257, 1, 1, 0, {97, 98, 256}, "x")), FormatError,
                     "1 unexpected bytes after the bpe tokenizer");
  // Each merge doubling the last token's length: refused at 2^17 bytes, before any string is built.
  std::vector<std::uint32_t> doubling = {97, 97, 256};
  for (std::uint32_t i = 1; i < 17; ++i) doubling.insert(doubling.end(), {255 + i, 255 + i, 256 + i});
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob(273, 1, 17, 0, doubling)), FormatError,
                     "merge 16 makes a token of 131072 bytes, at most 65536 are allowed");
}

TEST_CASE("utf8 stream: token by token, no broken character is ever printed", "[bpe]") {
  std::mt19937 rng(9);
  const std::string text = "a é 日本 😀 \xFF z \xE2\x82 \xF0\x9F\x98\x80";
  for (int trial = 0; trial < 200; ++trial) {
    Utf8Stream s;
    std::string shown;
    for (std::size_t at = 0; at < text.size();) {
      const std::size_t n = std::min<std::size_t>(text.size() - at, 1 + rng() % 4);
      const std::string_view out = s.feed(std::string_view(text).substr(at, n));
      // Every output ends outside the valid characters of the text.
      shown += out;
      REQUIRE(!Utf8Stream::cuts_character(text, shown.size()));
      // ... and holds back no more than an incomplete character.
      REQUIRE(at + n - shown.size() == Utf8Stream::incomplete_tail(text.substr(0, at + n)));
      at += n;
    }
    shown += s.flush();
    REQUIRE(shown == text);
  }
  CHECK(Utf8Stream::incomplete_tail("a\xE6\x97") == 2);  // 日 cut after 2 of 3 bytes
  CHECK(Utf8Stream::incomplete_tail("a\xF0\x9F\x98") == 3);
  CHECK(Utf8Stream::incomplete_tail("a\xED\xA0") == 0);  // a surrogate never completes
  CHECK(Utf8Stream::incomplete_tail("a\xE0\x80") == 0);  // nor an overlong form
  CHECK(Utf8Stream::incomplete_tail("a\xC3\xA9") == 0);
  CHECK(Utf8Stream::cuts_character("a\xC3\xA9", 2));
  CHECK(!Utf8Stream::cuts_character("a\xC3\xA9", 3));
  CHECK(!Utf8Stream::cuts_character("a\xC3\xC3\xA9", 2));  // the first 0xC3 is no character
  Utf8Stream s;
  CHECK(s.feed("\xE6\xE6\x97") == "\xE6");  // the fuzzer's case: a lead that cannot complete goes out
  CHECK(s.feed("\xA5") == "\xE6\x97\xA5");
}

}  // namespace test_bpe

namespace test_bpe {

namespace {

// A small GPT-2-style vocabulary: the 256 byte characters, then "Ġt" "he" "Ġthe" and a special.
std::string tiny_encoder_json(const std::string& extra = "") {
  std::string j = "{";
  for (unsigned b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, gpt2::byte_to_unicode()[b]);
    if (s == "\"" || s == "\\") s = "\\" + s;
    j += "\"" + s + "\": " + std::to_string(b) + ", ";
  }
  return j + "\"\xC4\xA0t\": 256, \"he\": 257, \"\xC4\xA0the\": 258, \"<|endoftext|>\": 259" + extra + "}";
}
const std::string tiny_merges = "#version: 0.2\n\xC4\xA0 t\nh e\n\xC4\xA0t he\n";

}  // namespace

TEST_CASE("gpt2: encoder.json and vocab.bpe give ranked merges, bytes through GPT-2's table", "[bpe]") {
  // The table: printable bytes stand for themselves, the others count up from U+0100 in byte order.
  CHECK(gpt2::byte_to_unicode()['A'] == U'A');
  CHECK(gpt2::byte_to_unicode()[0] == 0x100);
  CHECK(gpt2::byte_to_unicode()[' '] == 0x120);  // 'Ġ'
  CHECK(gpt2::byte_to_unicode()[0xAD] == 0x143);
  CHECK(gpt2::bytes_to_unicode(" the\n") == "\xC4\xA0the\xC4\x8A");

  const Tokenizer tok = Tokenizer::bpe(gpt2::vocab_from_strings(tiny_encoder_json(), tiny_merges));
  REQUIRE(tok.vocab_size() == 260);
  CHECK(tok.encode(" the the") == std::vector<Token>{258, 258});
  CHECK(tok.encode("the") == std::vector<Token>{'t', 257});  // "he" has rank 1, before "Ġt he"
  CHECK(tok.decode_token(259) == "<|endoftext|>");
  CHECK(tok.bpe_vocab()->specials().size() == 1);

  const auto fails = [](const std::string& json, const std::string& merges, const std::string& message) {
    SEQGEN_THROWS_WITH(gpt2::vocab_from_strings(json, merges), FormatError, message);
  };
  fails("[1, 2]", tiny_merges, "encoder.json: expected a JSON object from token string to id, found a array");
  fails("{\"a\": ", tiny_merges, "encoder.json: not valid JSON");
  fails(tiny_encoder_json(", \"x1\": 70000"), tiny_merges, "token \"x1\" has id 70000, expected an integer in [0, 261)");
  fails(tiny_encoder_json(", \"x1\": 3"), tiny_merges, "id 3 is given to both");
  fails(tiny_encoder_json(", \"x1\": \"7\""), tiny_merges, "token \"x1\" has id \"7\"");
  fails(tiny_encoder_json(), tiny_merges + "q z\n", "line 5 makes \"qz\", which encoder.json lacks");
  fails(tiny_encoder_json(), "#version: 0.2\nh\xC4\xA0\n", "line 2 is \"h\xC4\xA0\", expected two tokens separated by one space");
  fails(tiny_encoder_json(), "#version: 0.2\nzz e\n", "line 2 merges \"zz\" and \"e\", but encoder.json has no token \"zz\"");
  fails(tiny_encoder_json(), "#version: 0.2\n\xC4\xA0t he\n\xC4\xA0 t\nh e\n",
        "merge 0 (256, 257) uses token 256, which is neither a byte nor the result of an earlier merge");
  fails(tiny_encoder_json(), tiny_merges + "\nh e\n", "line 5 is empty");
  fails("{\"a\": 0}", "", "encoder.json: 1 tokens, expected 256 to 65536");
}

TEST_CASE("llm.c tokenizer.bin: written and read back, hostile files refused", "[bpe]") {
  const Tokenizer tok = Tokenizer::bpe(gpt2::vocab_from_strings(tiny_encoder_json(), tiny_merges));
  const std::string bin = LlmcTokenizer::from(tok, 259).to_bytes();
  // Header 1024 bytes, then 256 one-byte tokens (2 bytes each), "Ġt" → " t" (3), "he" (3), " the" (5), eot (14).
  REQUIRE(bin.size() == 1024 + 256 * 2 + 3 + 3 + 5 + 14);
  const LlmcTokenizer back = LlmcTokenizer::from_bytes(bin, "t.bin");
  CHECK(back.eot == 259);
  CHECK(back.tokens.size() == 260);
  CHECK(back.decode({258, 259, 'x'}) == " the<|endoftext|>x");
  for (std::size_t n = 0; n < bin.size(); n += 1 + n / 8) REQUIRE_THROWS_AS(LlmcTokenizer::from_bytes(bin.substr(0, n), "t.bin"), FormatError);
  std::string bad = bin;
  bad[0] = 'x';
  SEQGEN_THROWS_WITH(LlmcTokenizer::from_bytes(bad, "t.bin"), FormatError, "t.bin: magic");
  bad = bin;
  bad[8] = bad[9] = bad[10] = '\xFF';  // V = 0x00FFFFFF
  SEQGEN_THROWS_WITH(LlmcTokenizer::from_bytes(bad, "t.bin"), FormatError, "vocabulary size 16777215 does not fit");
  bad = bin;
  bad[1024] = 0;
  SEQGEN_THROWS_WITH(LlmcTokenizer::from_bytes(bad, "t.bin"), FormatError, "token 0 has length 0");
  SEQGEN_THROWS_WITH(LlmcTokenizer::from_bytes(bin + "z", "t.bin"), FormatError, "1 unexpected bytes after the last token");
  SEQGEN_THROWS_WITH(LlmcTokenizer::from(Tokenizer::bytes(), 0), ConfigError, "not a bytes one");
}

}  // namespace test_bpe

#include <seqgen/generate/generate_text.hpp>
#include <seqgen/models/gpt.hpp>

namespace test_bpe {

TEST_CASE("generate: streamed text never cuts a character, with byte and BPE tokens", "[bpe][generate]") {
  std::mt19937 text_rng(2);
  std::string train = "é日本語😀ÿ";
  for (int i = 0; i < 200; ++i) train += "Ωμέγα 日本語 café 😀 ";
  BpeTrainOptions o;
  o.vocab_size = 300;
  for (const Tokenizer& tok : {Tokenizer::bytes(), Tokenizer::bpe(train_bpe(train, o))}) {
    GptConfig c;
    c.vocab_size = tok.vocab_size();
    c.context = 64;
    c.channels = 8;
    c.layers = 1;
    c.heads = 2;
    Rng init(5);
    const Gpt<float> model(c, init);
    Index cuts_possible = 0;  // tokens that end inside a character: what the stream must hold back
    for (std::uint64_t seed = 1; seed <= 6; ++seed) {
      Rng rng(seed);
      SamplingOptions so;
      so.temperature = 2.0;  // near-uniform: many multi-byte characters cut between tokens
      std::vector<std::string> pieces;
      const std::string text =
          generate_text(model, tok, "日", 60, so, rng, [&](const std::string& p) { pieces.push_back(p); });
      std::string shown;
      for (const std::string& p : pieces) {
        shown += p;
        INFO(tok.kind_name() << " seed " << seed);
        REQUIRE(!Utf8Stream::cuts_character(text, shown.size()));
      }
      REQUIRE(shown == text);
      // The same text token by token, without the stream, does cut characters.
      const std::vector<Token> ids = tok.encode(text);
      std::size_t at = 0;
      for (Token id : ids) cuts_possible += Utf8Stream::cuts_character(text, at += tok.decode_token(id).size());
    }
    INFO(tok.kind_name());
    CHECK(cuts_possible > 0);  // the test reaches the case it is about
  }
}

}  // namespace test_bpe
