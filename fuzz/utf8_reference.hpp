// UTF-8 written again from Unicode Table 3-7 (the well-formed byte sequences), independently of
// include/seqgen/text/utf8.hpp: the validator the utf8 and tokenizer targets hold the library's
// decoder against, and the characters tokenizer it builds (tokenizer, dataset).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

#include "harness.hpp"

namespace seqgen_fuzz {

// Code points of `s`, or false at the first ill-formed sequence.
inline bool ref_utf8(std::string_view s, std::u32string& out) {
  out.clear();
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    // Table 3-7: the allowed range of each byte after the first, by first byte.
    unsigned lo = 0x80, hi = 0xBF;
    std::size_t len;
    if (b0 <= 0x7F) len = 1;
    else if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
    else if (b0 == 0xE0) len = 3, lo = 0xA0;
    else if (b0 == 0xED) len = 3, hi = 0x9F;
    else if (b0 >= 0xE1 && b0 <= 0xEF) len = 3;
    else if (b0 == 0xF0) len = 4, lo = 0x90;
    else if (b0 == 0xF4) len = 4, hi = 0x8F;
    else if (b0 >= 0xF1 && b0 <= 0xF3) len = 4;
    else return false;
    if (s.size() - i < len) return false;
    char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80u) || b > (k == 1 ? hi : 0xBFu)) return false;
      cp = cp << 6 | (b & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return true;
}

// The characters tokenizer of `text` built by the reference decoder and loaded with from_bytes:
// what Tokenizer::characters(text) must equal, at a fraction of its cost.
inline Tokenizer characters_of(std::string_view text) {
  std::u32string cps;
  check<FormatError>(ref_utf8(text, cps), "characters_of: ill-formed UTF-8");
  check<ConfigError>(!cps.empty(), "characters_of: empty text");
  std::sort(cps.begin(), cps.end());
  cps.erase(std::unique(cps.begin(), cps.end()), cps.end());
  std::string blob = "SQTK";
  for (std::uint32_t v : {std::uint32_t(1), std::uint32_t(1), std::uint32_t(cps.size())}) put_u32(blob, v);
  for (char32_t cp : cps) put_u32(blob, cp);
  return Tokenizer::from_bytes(blob);
}

// Text in one to four bytes per character, for the seeds of the text targets.
inline const std::string& unicode_sample() {
  static const std::string text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x98\x83 \xF0\x9F\x98\x80 \xEF\xBF\xBF\n";
  return text;
}

}  // namespace seqgen_fuzz
