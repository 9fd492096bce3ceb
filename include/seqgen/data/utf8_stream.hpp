// Streamed text that never shows half a character: a byte-level token (bytes, BPE) may end in the
// middle of a UTF-8 character, whose other bytes come with the next token. Utf8Stream holds back
// such a tail until the character is complete:
//
//   held   the longest tail of the text so far that is a proper prefix of a valid UTF-8 character
//          (a lead byte and fewer continuation bytes than it announces, each in its allowed range,
//          so no overlong form or surrogate is ever waited for)
//   out    everything else, at once; bytes that can never become valid UTF-8 are not held
//
//   Utf8Stream s;
//   for (each token) print(s.feed(tokenizer.decode_token(id)));
//   print(s.flush());      // a character still incomplete at the end, as it is
//
// The concatenation of the outputs is exactly the concatenation of the inputs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "seqgen/core/error.hpp"
#include "seqgen/data/utf8.hpp"

namespace seqgen {

class Utf8Stream {
 public:
  // The text that became safe to print; valid until the next call.
  std::string_view feed(std::string_view piece) {
    out_.assign(held_);
    out_.append(piece.data(), piece.size());
    const std::size_t keep = incomplete_tail(out_);
    held_.assign(out_, out_.size() - keep, keep);
    out_.resize(out_.size() - keep);
    return out_;
  }

  // Whatever is held back, as it is (the text ended inside a character).
  std::string_view flush() {
    out_.swap(held_);
    held_.clear();
    return out_;
  }

  // Whether offset `at` of `text` falls inside a valid UTF-8 character (the property the stream
  // keeps: it never cuts there).
  static bool cuts_character(std::string_view text, std::size_t at) {
    for (std::size_t q = at >= 3 ? at - 3 : 0; q < at; ++q) {
      std::size_t pos = q;
      try {
        utf8::decode_one(text, pos);
      } catch (const FormatError&) {
        continue;
      }
      if (pos > at) return true;
    }
    return false;
  }

  // The length of the longest tail of `s` that is a proper prefix of a valid UTF-8 character.
  static std::size_t incomplete_tail(std::string_view s) {
    const std::size_t n = s.size();
    for (std::size_t k = 1; k <= 3 && k <= n; ++k) {
      const auto lead = static_cast<unsigned char>(s[n - k]);
      if ((lead & 0xC0) == 0x80) continue;  // a continuation byte: look further back
      const std::size_t need = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                             : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
      if (need <= k) return 0;  // ASCII, an invalid lead, or a complete (or too long) sequence
      // The second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
      if (k >= 2) {
        const auto second = static_cast<unsigned char>(s[n - k + 1]);
        const unsigned char lo = lead == 0xE0 ? 0xA0 : lead == 0xF0 ? 0x90 : 0x80;
        const unsigned char hi = lead == 0xED ? 0x9F : lead == 0xF4 ? 0x8F : 0xBF;
        if (second < lo || second > hi) return 0;
      }
      return k;
    }
    return 0;
  }

 private:
  std::string held_, out_;
};

}  // namespace seqgen
