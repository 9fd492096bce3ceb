#include <seqgen/data/tokenizer.hpp>

#include <set>

#include "test_util.hpp"

namespace test_tokenizer {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

// The byte string of a list of byte values, so expected encodings are written out by hand.
std::string bytes_of(std::initializer_list<unsigned> values) {
  std::string s;
  for (unsigned v : values) s += static_cast<char>(v);
  return s;
}

// Appends a little-endian u32, to build blobs by hand independently of Tokenizer::to_bytes.
void put(std::string& blob, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) blob += static_cast<char>((v >> (8 * k)) & 0xFF);
}

std::string header(std::uint32_t version, std::uint32_t kind, std::uint32_t count) {
  std::string blob = "SQTK";
  put(blob, version);
  put(blob, kind);
  put(blob, count);
  return blob;
}

const std::string chinese = "「生成模型的奇妙之旅:从RNN到GPT3」";

}  // namespace

TEST_CASE("utf8: encode and decode match the byte patterns at every length boundary", "[utf8]") {
  const std::vector<std::pair<char32_t, std::string>> cases = {
      {U'A', "A"},
      {0x7F, bytes_of({0x7F})},
      {0x80, bytes_of({0xC2, 0x80})},
      {0xE9, bytes_of({0xC3, 0xA9})},
      {0x7FF, bytes_of({0xDF, 0xBF})},
      {0x800, bytes_of({0xE0, 0xA0, 0x80})},
      {0x20AC, bytes_of({0xE2, 0x82, 0xAC})},
      {0xD7FF, bytes_of({0xED, 0x9F, 0xBF})},
      {0xE000, bytes_of({0xEE, 0x80, 0x80})},
      {0xFFFF, bytes_of({0xEF, 0xBF, 0xBF})},
      {0x10000, bytes_of({0xF0, 0x90, 0x80, 0x80})},
      {0x1F600, bytes_of({0xF0, 0x9F, 0x98, 0x80})},
      {0x10FFFF, bytes_of({0xF4, 0x8F, 0xBF, 0xBF})},
  };
  std::string all;
  std::u32string cps;
  for (const auto& [cp, bytes] : cases) {
    INFO(utf8::code_point_name(cp));
    REQUIRE(utf8::encode(cp) == bytes);
    REQUIRE(utf8::decode(bytes) == std::u32string(1, cp));
    all += bytes;
    cps += cp;
  }
  REQUIRE(utf8::decode(all) == cps);
  REQUIRE(utf8::encode(cps) == all);
  REQUIRE(utf8::count_characters(all) == cases.size());
  REQUIRE(utf8::code_point_name(0x41) == "U+0041");
  REQUIRE(utf8::code_point_name(0x1F600) == "U+1F600");
  REQUIRE(utf8::decode(chinese).size() == 21);
  SEQGEN_THROWS_WITH(utf8::encode(char32_t{0xD800}), FormatError, "U+D800 is a surrogate or above U+10FFFF");
  SEQGEN_THROWS_WITH(utf8::encode(char32_t{0x110000}), FormatError, "U+110000");
}

TEST_CASE("utf8: each class of invalid input names its byte offset and byte", "[utf8][errors]") {
  struct Case {
    std::string text, message;
  };
  const std::vector<Case> cases = {
      {"ab" + bytes_of({0x80}), "byte offset 2 (byte 0x80): a continuation byte"},
      {"a" + bytes_of({0xC0, 0x80}), "byte offset 1 (byte 0xC0): overlong encoding"},
      {bytes_of({0xC1, 0xBF}), "byte offset 0 (byte 0xC1): overlong encoding"},
      {"abc" + bytes_of({0xE2, 0x82}), "byte offset 3 (byte 0xE2): truncated sequence"},
      {"x" + bytes_of({0xF0, 0x9F, 0x98}), "byte offset 1 (byte 0xF0): truncated sequence"},
      {"a" + bytes_of({0xE2, 0x41, 0x42}), "byte offset 2 (byte 0x41): expected a continuation byte"},
      {bytes_of({0xF0, 0x9F, 0x98, 0xC3}), "byte offset 3 (byte 0xC3): expected a continuation byte"},
      {bytes_of({0xE0, 0x80, 0xAF}), "byte offset 0 (byte 0xE0): overlong encoding of U+002F in 3 bytes"},
      {"xx" + bytes_of({0xF0, 0x8F, 0xBF, 0xBF}), "byte offset 2 (byte 0xF0): overlong encoding of U+FFFF in 4 bytes"},
      {"e" + bytes_of({0xED, 0xA0, 0x80}), "byte offset 1 (byte 0xED): encodes the surrogate U+D800"},
      {bytes_of({0xED, 0xBF, 0xBF}), "byte offset 0 (byte 0xED): encodes the surrogate U+DFFF"},
      {bytes_of({0xF4, 0x90, 0x80, 0x80}), "byte offset 0 (byte 0xF4): encodes U+110000, above U+10FFFF"},
      {bytes_of({0xF5, 0x80, 0x80, 0x80}), "byte offset 0 (byte 0xF5): lead byte of a code point above U+10FFFF"},
      {"ok" + bytes_of({0xFF}), "byte offset 2 (byte 0xFF): not a UTF-8 lead byte"},
  };
  for (const auto& c : cases) {
    INFO(c.message);
    SEQGEN_THROWS_WITH(utf8::decode(c.text), FormatError, "invalid UTF-8 at " + c.message);
  }
  SEQGEN_THROWS_WITH(utf8::decode(bytes_of({0x80}), "here"), FormatError, "here: invalid UTF-8 at byte offset 0");
}

TEST_CASE("Tokenizer: bytes round-trips any bytes, invalid UTF-8 included", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::bytes();
  REQUIRE(tok.kind() == Tokenizer::Kind::bytes);
  REQUIRE(tok.vocab_size() == 256);
  std::string all;
  for (int b = 255; b >= 0; --b) all += static_cast<char>(b);
  all += bytes_of({0xC0, 0x80, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 0x00}) + chinese;
  const std::vector<Token> ids = tok.encode(all);
  REQUIRE(ids.size() == all.size());
  for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(ids[i] == static_cast<unsigned char>(all[i]));
  REQUIRE(tok.decode(ids) == all);
  REQUIRE(tok.decode_token(0xE4) == bytes_of({0xE4}));
  REQUIRE(tok.encode(chinese).size() == 47);  // 13 three-byte characters and 8 ASCII ones
}

TEST_CASE("Tokenizer: characters of an ASCII corpus are the sorted distinct characters", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::characters("hello world");
  REQUIRE(tok.kind() == Tokenizer::Kind::characters);
  REQUIRE(tok.vocab_size() == 8);  // ' ' d e h l o r w
  REQUIRE(tok.code_points() == std::vector<char32_t>{U' ', U'd', U'e', U'h', U'l', U'o', U'r', U'w'});
  REQUIRE(tok.encode("hello") == std::vector<Token>{3, 2, 4, 4, 5});
  REQUIRE(tok.encode("") == std::vector<Token>{});
  const std::vector<Token> ids = tok.encode("world hello");
  REQUIRE(tok.decode(ids) == "world hello");
  std::vector<Token> out = {9, 9, 9, 9, 9, 9, 9};
  tok.encode("low", out);  // assigns, does not append
  REQUIRE(out == std::vector<Token>{4, 5, 7});
}

TEST_CASE("Tokenizer: characters of a Chinese text round-trip and are ordered by code point", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::characters(chinese);
  REQUIRE(tok.vocab_size() == 20);  // 21 characters, 'N' twice
  const std::vector<Token> ids = tok.encode(chinese);
  REQUIRE(ids.size() == 21);
  REQUIRE(ids[13] == ids[14]);  // "NN"
  REQUIRE(tok.decode(ids) == chinese);
  REQUIRE(tok.decode_token(0) == "3");
  REQUIRE(tok.decode_token(1) == ":");
  REQUIRE(tok.decode_token(2) == "G");
  REQUIRE(tok.decode_token(7) == "「");  // U+300C, the smallest non-ASCII code point here
  REQUIRE(tok.decode_token(19) == "的");  // U+7684, the largest
  const std::vector<Token> ids2 = tok.encode("生成GPT");
  REQUIRE(tok.decode(ids2) == "生成GPT");
  std::u32string previous;
  for (Token id = 0; id < tok.vocab_size(); ++id) {
    const std::u32string cp = utf8::decode(tok.decode_token(id));
    REQUIRE(cp.size() == 1);
    if (id > 0) REQUIRE(cp[0] > previous[0]);
    previous = cp;
  }
}

TEST_CASE("Tokenizer: four-byte emoji are single characters", "[tokenizer]") {
  const std::string text = "a😀b🎉😀";
  const Tokenizer tok = Tokenizer::characters(text);
  REQUIRE(tok.vocab_size() == 4);
  REQUIRE(tok.encode(text) == std::vector<Token>{0, 3, 1, 2, 3});  // a < b < U+1F389 < U+1F600
  REQUIRE(tok.decode_token(3) == bytes_of({0xF0, 0x9F, 0x98, 0x80}));
  const std::vector<Token> ids = tok.encode(text);
  REQUIRE(tok.decode(ids) == text);
}

TEST_CASE("Tokenizer: unknown characters, invalid UTF-8 and bad ids are clear errors", "[tokenizer][errors]") {
  const Tokenizer tok = Tokenizer::characters("生成 ab");
  SEQGEN_THROWS_WITH(tok.encode("生成 aé"), IndexError,
                     "character 'é' (U+00E9) at character index 4 (byte offset 8) is not in the vocabulary of 5");
  SEQGEN_THROWS_WITH(tok.encode("ab\n"), IndexError, "character '\\n' (U+000A) at character index 2 (byte offset 2)");
  SEQGEN_THROWS_WITH(tok.encode("abc"), IndexError, "'c' (U+0063) at character index 2");
  SEQGEN_THROWS_WITH(tok.encode("生" + bytes_of({0xE6, 0x88})), FormatError,
                     "Tokenizer::encode: invalid UTF-8 at byte offset 3 (byte 0xE6): truncated");
  SEQGEN_THROWS_WITH(Tokenizer::characters("abc" + bytes_of({0xC3})), FormatError,
                     "Tokenizer::characters: invalid UTF-8 at byte offset 3 (byte 0xC3)");
  SEQGEN_THROWS_WITH(Tokenizer::characters(""), ConfigError, "corpus is empty");
  const std::vector<Token> too_large{0, 5}, negative{-1};
  SEQGEN_THROWS_WITH(tok.decode(too_large), IndexError,
                     "Tokenizer::decode: token id 5 at position 1 is out of range for a vocabulary of 5");
  SEQGEN_THROWS_WITH(tok.decode(negative), IndexError, "token id -1 at position 0");
  SEQGEN_THROWS_WITH(Tokenizer::bytes().decode_token(256), IndexError,
                     "Tokenizer::decode_token: token id 256 is out of range for a vocabulary of 256");
}

TEST_CASE("Tokenizer: at most 65535 characters", "[tokenizer][errors]") {
  // Code points from U+0001 upwards, skipping the surrogates.
  std::string corpus;
  char32_t cp = 1;
  for (int i = 0; i < 65535; ++i, ++cp) {
    if (cp == 0xD800) cp = 0xE000;
    utf8::append(corpus, cp);
  }
  REQUIRE(Tokenizer::characters(corpus).vocab_size() == 65535);
  utf8::append(corpus, cp);
  SEQGEN_THROWS_WITH(Tokenizer::characters(corpus), ConfigError,
                     "the corpus has 65536 distinct characters, at most 65535 are supported");
}

TEST_CASE("Tokenizer: to_bytes writes the documented layout and from_bytes reads it back", "[tokenizer][io]") {
  std::string expected = header(2, 1, 3);
  put(expected, 0x61);
  put(expected, 0x62);
  put(expected, 0x1F600);
  REQUIRE(Tokenizer::characters("b😀a").to_bytes() == expected);
  REQUIRE(Tokenizer::bytes().to_bytes() == header(2, 0, 256));

  for (const Tokenizer& tok : {Tokenizer::bytes(), Tokenizer::characters("hello world"),
                               Tokenizer::characters(chinese), Tokenizer::characters("a😀b🎉")}) {
    const Tokenizer back = Tokenizer::from_bytes(tok.to_bytes());
    REQUIRE(back == tok);
    REQUIRE(back.encode("") == std::vector<Token>{});
  }
  REQUIRE(Tokenizer::from_bytes(Tokenizer::characters(chinese).to_bytes()).decode_token(7) == "「");
  REQUIRE(Tokenizer::bytes() == Tokenizer());
  REQUIRE(Tokenizer::bytes() != Tokenizer::characters("ab"));
  REQUIRE(Tokenizer::characters("ab") != Tokenizer::characters("abc"));
}

TEST_CASE("Tokenizer: from_bytes rejects every truncation and hostile blobs", "[tokenizer][io][errors]") {
  for (const std::string& blob : {Tokenizer::characters(chinese).to_bytes(), Tokenizer::bytes().to_bytes()}) {
    for (std::size_t n = 0; n < blob.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      REQUIRE_THROWS_AS(Tokenizer::from_bytes(blob.substr(0, n)), FormatError);
    }
    REQUIRE_THROWS_AS(Tokenizer::from_bytes(blob + "x"), FormatError);
  }
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes("SQT"), FormatError, "the blob is 3 bytes, shorter than the 16-byte header");
  std::string wrong_magic = header(1, 1, 0);
  wrong_magic[0] = 'X';
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(wrong_magic), FormatError, "bad magic");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(header(3, 0, 256)), FormatError,
                     "unsupported version 3, this build reads versions 1 to 2");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(header(1, 7, 256)), FormatError, "unknown kind 7");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(header(1, 0, 255)), FormatError, "256 tokens, the blob says 255");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(header(1, 1, 0xFFFFFFFF) + "abcd"), FormatError,
                     "character count 4294967295 is not in [1, 65535]");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(header(1, 1, 0)), FormatError, "character count 0");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(header(1, 1, 65535) + "abcd"), FormatError,
                     "65535 code points need 262140 bytes after the header, the blob has 4");
  const auto blob_of = [](std::initializer_list<std::uint32_t> cps) {
    std::string blob = header(1, 1, static_cast<std::uint32_t>(cps.size()));
    for (std::uint32_t cp : cps) put(blob, cp);
    return blob;
  };
  REQUIRE(Tokenizer::from_bytes(blob_of({0x41, 0x42})) == Tokenizer::characters("BA"));
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob_of({0x42, 0x41})), FormatError,
                     "strictly increasing, but U+0041 (entry 1) follows U+0042");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob_of({0x41, 0x41})), FormatError, "strictly increasing");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob_of({0x41, 0xD800})), FormatError, "code point 1 is U+D800, a surrogate");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob_of({0x110000})), FormatError, "code point 0 is U+110000");
  SEQGEN_THROWS_WITH(Tokenizer::from_bytes(blob_of({0xFFFFFFFF})), FormatError, "code point 0 is U+FFFFFFFF");
}

TEST_CASE("Tokenizer: from_bytes on randomly corrupted blobs returns a valid tokenizer or throws FormatError",
          "[tokenizer][io][errors]") {
  const std::string valid = Tokenizer::characters("a😀b🎉 生成xyz").to_bytes();
  Rng rng(11);
  int accepted = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string blob = valid;
    const auto flips = 1 + rng.uniform_int(3);
    for (std::uint64_t k = 0; k < flips; ++k)
      blob[rng.uniform_int(blob.size())] = static_cast<char>(rng.uniform_int(256));
    try {
      const Tokenizer tok = Tokenizer::from_bytes(blob);
      ++accepted;
      // Whatever was accepted is a consistent tokenizer: it serializes back to the same bytes and
      // every token decodes to one character.
      REQUIRE(tok.to_bytes() == blob);
      for (Token id = 0; id < tok.vocab_size(); ++id) REQUIRE(utf8::decode(tok.decode_token(id)).size() == 1);
    } catch (const FormatError&) {
    }
  }
  REQUIRE(accepted < 2000);
}

}  // namespace test_tokenizer
