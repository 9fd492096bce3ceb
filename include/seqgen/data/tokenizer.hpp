// Tokenizers: text <-> token ids, of two kinds held by one concrete class, so a checkpoint can
// store either.
//
//   bytes       V = 256, token = byte value. Any file works and decode(encode(s)) == s for every s,
//               valid UTF-8 or not.
//   characters  V = number of distinct Unicode code points of a corpus (at most 65535), token =
//               rank of the code point in sorted order (as in char-rnn and nanoGPT's
//               shakespeare_char). Text is decoded strictly from UTF-8 (see utf8.hpp).
//
// Serialized form (to_bytes / from_bytes), little-endian, for checkpoints:
//   offset  size       field
//   0       4          magic "SQTK"
//   4       4          u32 version = 1
//   8       4          u32 kind: 0 = bytes, 1 = characters
//   12      4          u32 count = vocabulary size (256 for bytes)
//   16      4 * count  u32 code points, strictly increasing (characters only; bytes store none)
// from_bytes treats its input as untrusted: every field and count is checked against the bytes
// that remain before anything is allocated, and anything wrong is a FormatError.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/data/utf8.hpp"

namespace seqgen {

class Tokenizer {
 public:
  enum class Kind { bytes, characters };

  // Token ids are stored in 16 bits by TokenDataset; one value is kept spare.
  static constexpr Index max_characters = 65535;
  static constexpr std::uint32_t format_version = 1;

  // The bytes tokenizer, so that a default-constructed member (say in a checkpoint struct) is usable.
  Tokenizer() : Tokenizer(Kind::bytes, {}) {}

  static Tokenizer bytes() { return Tokenizer(Kind::bytes, {}); }

  // Vocabulary = sorted distinct code points of `corpus`.
  static Tokenizer characters(std::string_view corpus) {
    check<ConfigError>(!corpus.empty(), "Tokenizer::characters: the corpus is empty, it has no characters to learn");
    std::vector<bool> seen(utf8::max_code_point + 1, false);
    Index distinct = 0;
    for (std::size_t pos = 0; pos < corpus.size();) {
      const char32_t cp = utf8::decode_one(corpus, pos, "Tokenizer::characters");
      if (!seen[cp]) {
        seen[cp] = true;
        ++distinct;
      }
    }
    check<ConfigError>(distinct <= max_characters, "Tokenizer::characters: the corpus has ", distinct,
                       " distinct characters, at most ", max_characters,
                       " are supported (ids are stored in 16 bits); use Tokenizer::bytes()");
    std::vector<char32_t> symbols;
    symbols.reserve(static_cast<std::size_t>(distinct));
    for (char32_t cp = 0; cp <= utf8::max_code_point; ++cp)
      if (seen[cp]) symbols.push_back(cp);
    return Tokenizer(Kind::characters, std::move(symbols));
  }

  Kind kind() const { return kind_; }
  Index vocab_size() const { return kind_ == Kind::bytes ? 256 : static_cast<Index>(symbols_.size()); }
  // The code point of each token, in id order (characters only; empty for bytes).
  const std::vector<char32_t>& code_points() const { return symbols_; }

  // Calls emit(Token) for each token of `text`, in order, without building a vector; encode() and
  // TokenDataset use it. Throws FormatError on invalid UTF-8 (characters only) and IndexError on a
  // character outside the vocabulary.
  template <class Emit>
  void encode_each(std::string_view text, Emit&& emit) const {
    if (kind_ == Kind::bytes) {
      for (char c : text) emit(static_cast<Token>(static_cast<unsigned char>(c)));
      return;
    }
    Index index = 0;  // character index, for the error message
    for (std::size_t pos = 0; pos < text.size(); ++index) {
      const std::size_t offset = pos;
      const auto byte = static_cast<unsigned char>(text[pos]);
      Token id;
      if (byte < 0x80) {  // ASCII: one table lookup
        ++pos;
        id = ascii_[byte];
        if (id < 0) unknown_character(byte, index, offset);
      } else {
        const char32_t cp = utf8::decode_one(text, pos, "Tokenizer::encode");
        const auto it = std::lower_bound(symbols_.begin(), symbols_.end(), cp);
        if (it == symbols_.end() || *it != cp) unknown_character(cp, index, offset);
        id = static_cast<Token>(it - symbols_.begin());
      }
      emit(id);
    }
  }

  // ASSIGNS out = the tokens of `text`.
  void encode(std::string_view text, std::vector<Token>& out) const {
    out.clear();
    out.reserve(kind_ == Kind::bytes ? text.size() : utf8::count_characters(text));
    encode_each(text, [&](Token id) { out.push_back(id); });
  }
  std::vector<Token> encode(std::string_view text) const {
    std::vector<Token> out;
    encode(text, out);
    return out;
  }

  std::string decode(TokenSpan ids) const {
    std::string out;
    out.reserve(static_cast<std::size_t>(ids.size));
    for (Index i = 0; i < ids.size; ++i) {
      check_id(ids[i], "Tokenizer::decode", i);
      append_token(out, ids[i]);
    }
    return out;
  }

  std::string decode_token(Token id) const {
    check_id(id, "Tokenizer::decode_token", -1);
    std::string out;
    append_token(out, id);
    return out;
  }

  std::string to_bytes() const {
    std::string out = "SQTK";
    put_u32(out, format_version);
    put_u32(out, kind_ == Kind::bytes ? 0 : 1);
    put_u32(out, static_cast<std::uint32_t>(vocab_size()));
    for (char32_t cp : symbols_) put_u32(out, cp);
    return out;
  }

  static Tokenizer from_bytes(std::string_view blob) {
    const char* what = "Tokenizer::from_bytes: ";
    check<FormatError>(blob.size() >= 16, what, "the blob is ", blob.size(), " bytes, shorter than the 16-byte header");
    check<FormatError>(blob.substr(0, 4) == "SQTK", what, "bad magic, expected \"SQTK\": not a seqgen tokenizer");
    const std::uint32_t version = get_u32(blob, 4), kind = get_u32(blob, 8), count = get_u32(blob, 12);
    check<FormatError>(version == format_version, what, "unsupported version ", version, ", this build reads version ",
                       format_version);
    check<FormatError>(kind <= 1, what, "unknown kind ", kind, ", expected 0 (bytes) or 1 (characters)");
    const std::uint64_t remaining = blob.size() - 16;
    if (kind == 0) {
      check<FormatError>(count == 256, what, "a bytes tokenizer has 256 tokens, the blob says ", count);
      check<FormatError>(remaining == 0, what, remaining, " unexpected bytes after a bytes tokenizer");
      return bytes();
    }
    check<FormatError>(count >= 1 && count <= max_characters, what, "character count ", count, " is not in [1, ",
                       max_characters, "]");
    check<FormatError>(remaining == 4 * std::uint64_t{count}, what, count, " code points need ",
                       4 * std::uint64_t{count}, " bytes after the header, the blob has ", remaining);
    std::vector<char32_t> symbols(count);
    for (std::uint32_t i = 0; i < count; ++i) {
      const std::uint32_t cp = get_u32(blob, 16 + 4 * std::size_t{i});
      // check<> would build these messages for every entry; throw only when needed.
      if (!utf8::is_scalar_value(cp))
        throw FormatError(detail::cat(what, "code point ", i, " is ", utf8::code_point_name(cp),
                                      ", a surrogate or above U+10FFFF"));
      if (i > 0 && cp <= symbols[i - 1])
        throw FormatError(detail::cat(what, "code points must be strictly increasing, but ", utf8::code_point_name(cp),
                                      " (entry ", i, ") follows ", utf8::code_point_name(symbols[i - 1])));
      symbols[i] = cp;
    }
    return Tokenizer(Kind::characters, std::move(symbols));
  }

  friend bool operator==(const Tokenizer& a, const Tokenizer& b) {
    return a.kind_ == b.kind_ && a.symbols_ == b.symbols_;
  }
  friend bool operator!=(const Tokenizer& a, const Tokenizer& b) { return !(a == b); }

 private:
  Tokenizer(Kind kind, std::vector<char32_t> symbols) : kind_(kind), symbols_(std::move(symbols)) {
    ascii_.fill(-1);
    for (std::size_t i = 0; i < symbols_.size() && symbols_[i] < 0x80; ++i)
      ascii_[symbols_[i]] = static_cast<Token>(i);
  }

  // `position` is the index of the id in its sequence, or -1 for a lone token.
  void check_id(Token id, const char* caller, Index position) const {
    if (id >= 0 && id < vocab_size()) return;
    throw IndexError(detail::cat(caller, ": token id ", id,
                                 position >= 0 ? detail::cat(" at position ", position) : std::string(),
                                 " is out of range for a vocabulary of ", vocab_size()));
  }

  void append_token(std::string& out, Token id) const {
    if (kind_ == Kind::bytes)
      out += static_cast<char>(static_cast<unsigned char>(id));
    else
      utf8::append(out, symbols_[static_cast<std::size_t>(id)]);
  }

  // The message shows the character itself (control characters escaped) and its code point.
  [[noreturn]] void unknown_character(char32_t cp, Index index, std::size_t offset) const {
    std::string shown;
    if (cp == '\n') shown = "\\n";
    else if (cp == '\t') shown = "\\t";
    else if (cp == '\r') shown = "\\r";
    else if (cp < 0x20 || cp == 0x7F) shown = "\\x" + utf8::byte_name(static_cast<unsigned char>(cp)).substr(2);
    else shown = utf8::encode(cp);
    throw IndexError(detail::cat("Tokenizer::encode: character '", shown, "' (", utf8::code_point_name(cp),
                                 ") at character index ", index, " (byte offset ", offset,
                                 ") is not in the vocabulary of ", vocab_size(), " characters"));
  }

  static void put_u32(std::string& out, std::uint32_t v) {
    for (int shift = 0; shift < 32; shift += 8) out += static_cast<char>((v >> shift) & 0xFF);
  }
  static std::uint32_t get_u32(std::string_view blob, std::size_t at) {
    std::uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(blob[at + static_cast<std::size_t>(k)]);
    return v;
  }

  Kind kind_;
  std::vector<char32_t> symbols_;     // characters: code point of each id, strictly increasing
  std::array<Token, 128> ascii_{};    // characters: id of each ASCII code point, -1 when absent
};

}  // namespace seqgen
