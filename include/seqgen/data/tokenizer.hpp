// Tokenizers: text <-> token ids, of three kinds held by one concrete class, so a checkpoint can
// store any of them.
//
//   bytes       V = 256, token = byte value. Any file works and decode(encode(s)) == s for every s,
//               valid UTF-8 or not.
//   characters  V = number of distinct Unicode code points of a corpus (at most 65535), token =
//               rank of the code point in sorted order (as in char-rnn and nanoGPT's
//               shakespeare_char). Text is decoded strictly from UTF-8 (see utf8.hpp).
//   bpe         byte-level BPE (bpe.hpp): V byte strings, learned from a text (bpe_train.hpp) or
//               GPT-2's (gpt2_vocab.hpp). Any bytes work and decode(encode(s)) == s for every s.
//
// Serialized form (to_bytes / from_bytes), little-endian, for checkpoints:
//   offset  size       field
//   0       4          magic "SQTK"
//   4       4          u32 version = 2 (version 1, written before BPE, is read too: kinds 0 and 1)
//   8       4          u32 kind: 0 = bytes, 1 = characters, 2 = bpe
//   12      4          u32 count = vocabulary size V (256 for bytes)
//   16      4 * count  u32 code points, strictly increasing (characters only; bytes store none)
// and for bpe, from offset 16:
//   4          u32 pre-split: 0 = none, 1 = gpt2 (pretokenize.hpp)
//   4          u32 M, the number of merges
//   4          u32 S, the number of special tokens
//   4 * 256    u32 token id of each byte value 0..255
//   12 * M     u32 left, u32 right, u32 result of each merge, in rank order
//   S times    u32 id, u32 length n, n bytes: a special token
// from_bytes treats its input as untrusted: every field and count is checked against the bytes
// that remain before anything is allocated, and anything wrong is a FormatError.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/data/bpe.hpp"
#include "seqgen/data/utf8.hpp"

namespace seqgen {

class Tokenizer {
 public:
  enum class Kind { bytes, characters, bpe };

  // Token ids are stored in 16 bits by TokenDataset; one value is kept spare.
  static constexpr Index max_characters = 65535;
  static constexpr std::uint32_t format_version = 2;

  // The bytes tokenizer, so that a default-constructed member (say in a checkpoint struct) is usable.
  Tokenizer() : Tokenizer(Kind::bytes, {}) {}

  static Tokenizer bytes() { return Tokenizer(Kind::bytes, {}); }

  static Tokenizer bpe(BpeVocab vocab) {
    Tokenizer tok(Kind::bpe, {});
    tok.bpe_ = std::make_shared<const BpeVocab>(std::move(vocab));
    return tok;
  }

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
  // "bytes", "characters" or "bpe", for messages.
  const char* kind_name() const {
    return kind_ == Kind::bytes ? "bytes" : kind_ == Kind::characters ? "characters" : "bpe";
  }
  Index vocab_size() const {
    return kind_ == Kind::bytes ? 256 : kind_ == Kind::bpe ? bpe_->vocab_size() : static_cast<Index>(symbols_.size());
  }
  // The BPE vocabulary (bpe only; null otherwise).
  const BpeVocab* bpe_vocab() const { return bpe_.get(); }
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
    if (kind_ == Kind::bpe) {
      bpe_->encode_each(text, emit);
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
    out.reserve(kind_ == Kind::bytes ? text.size() : kind_ == Kind::bpe ? text.size() / 3 : utf8::count_characters(text));
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
    put_u32(out, static_cast<std::uint32_t>(kind_));
    put_u32(out, static_cast<std::uint32_t>(vocab_size()));
    for (char32_t cp : symbols_) put_u32(out, cp);
    if (kind_ == Kind::bpe) {
      const BpeVocab& v = *bpe_;
      put_u32(out, static_cast<std::uint32_t>(v.split()));
      put_u32(out, static_cast<std::uint32_t>(v.merges().size()));
      put_u32(out, static_cast<std::uint32_t>(v.specials().size()));
      for (Token id : v.byte_ids()) put_u32(out, static_cast<std::uint32_t>(id));
      for (const BpeMerge& m : v.merges()) {
        put_u32(out, static_cast<std::uint32_t>(m.left));
        put_u32(out, static_cast<std::uint32_t>(m.right));
        put_u32(out, static_cast<std::uint32_t>(m.result));
      }
      for (const BpeSpecial& sp : v.specials()) {
        put_u32(out, static_cast<std::uint32_t>(sp.id));
        put_u32(out, static_cast<std::uint32_t>(sp.bytes.size()));
        out += sp.bytes;
      }
    }
    return out;
  }

  static Tokenizer from_bytes(std::string_view blob) {
    const char* what = "Tokenizer::from_bytes: ";
    check<FormatError>(blob.size() >= 16, what, "the blob is ", blob.size(), " bytes, shorter than the 16-byte header");
    check<FormatError>(blob.substr(0, 4) == "SQTK", what, "bad magic, expected \"SQTK\": not a seqgen tokenizer");
    const std::uint32_t version = get_u32(blob, 4), kind = get_u32(blob, 8), count = get_u32(blob, 12);
    check<FormatError>(version >= 1 && version <= format_version, what, "unsupported version ", version,
                       ", this build reads versions 1 to ", format_version);
    check<FormatError>(kind <= (version == 1 ? 1u : 2u), what, "unknown kind ", kind,
                       version == 1 ? ", expected 0 (bytes) or 1 (characters)"
                                    : ", expected 0 (bytes), 1 (characters) or 2 (bpe)");
    const std::uint64_t remaining = blob.size() - 16;
    if (kind == 2) return bpe_from_bytes(blob, count);
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
    if (a.kind_ != b.kind_) return false;
    if (a.kind_ == Kind::bpe) return *a.bpe_ == *b.bpe_;
    return a.symbols_ == b.symbols_;
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
    else if (kind_ == Kind::bpe)
      out += bpe_->token(id);
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

  // The bpe part of a version 2 blob (see the header comment); every count is checked against the
  // bytes that remain before anything is allocated.
  static Tokenizer bpe_from_bytes(std::string_view blob, std::uint32_t count) {
    const std::string what = "Tokenizer::from_bytes";
    const std::uint64_t fixed = 16 + 12 + 4 * 256;
    check<FormatError>(blob.size() >= fixed, what, ": a bpe tokenizer needs at least ", fixed,
                       " bytes (header, counts and byte ids), the blob has ", blob.size());
    check<FormatError>(count >= 256 && count <= BpeVocab::max_vocab, what, ": bpe vocabulary size ", count,
                       " is not in [256, ", BpeVocab::max_vocab, "]");
    const std::uint32_t split = get_u32(blob, 16), merges = get_u32(blob, 20), specials = get_u32(blob, 24);
    check<FormatError>(split <= 1, what, ": unknown pre-split ", split, ", expected 0 (none) or 1 (gpt2)");
    check<FormatError>(std::uint64_t{merges} + specials + 256 <= count, what, ": ", merges, " merges and ", specials,
                       " special tokens do not fit a vocabulary of ", count, " tokens");
    std::array<Token, 256> byte_ids{};
    for (std::size_t b = 0; b < 256; ++b) byte_ids[b] = as_id(get_u32(blob, 28 + 4 * b));
    std::size_t at = static_cast<std::size_t>(fixed);
    check<FormatError>(blob.size() - at >= 12 * std::uint64_t{merges}, what, ": ", merges, " merges need ",
                       12 * std::uint64_t{merges}, " bytes, the blob has ", blob.size() - at, " left");
    std::vector<BpeMerge> m(merges);
    for (auto& x : m) {
      x = {as_id(get_u32(blob, at)), as_id(get_u32(blob, at + 4)), as_id(get_u32(blob, at + 8))};
      at += 12;
    }
    std::vector<BpeSpecial> sp;
    for (std::uint32_t s = 0; s < specials; ++s) {
      check<FormatError>(blob.size() - at >= 8, what, ": special token ", s, " of ", specials,
                         " is cut off (its id and length need 8 bytes, ", blob.size() - at, " remain)");
      const Token id = as_id(get_u32(blob, at));
      const std::uint32_t n = get_u32(blob, at + 4);
      at += 8;
      check<FormatError>(blob.size() - at >= n, what, ": special token ", s, " has ", n, " bytes, the blob has ",
                         blob.size() - at, " left");
      sp.push_back({id, std::string(blob.substr(at, n))});
      at += n;
    }
    check<FormatError>(at == blob.size(), what, ": ", blob.size() - at, " unexpected bytes after the bpe tokenizer");
    return bpe(BpeVocab(count, byte_ids, std::move(m), std::move(sp), static_cast<PreSplit>(split), what));
  }
  // An id read from a blob; values above INT32_MAX become -1, which BpeVocab reports as out of range.
  static Token as_id(std::uint32_t v) { return v > 0x7FFFFFFFu ? Token(-1) : static_cast<Token>(v); }

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
  std::shared_ptr<const BpeVocab> bpe_;  // bpe: immutable, so copies of a tokenizer share it
};

}  // namespace seqgen
