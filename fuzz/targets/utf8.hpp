// Target `utf8`: utf8::decode, decode_one, count_characters, encode, against the validator of
// utf8_reference.hpp (Unicode Table 3-7). The decoder must accept exactly the well-formed
// sequences, with the same code points; encode and decode must round-trip.
// Input: any bytes, read as text and, four bytes at a time, as code points.
#pragma once

#include "../utf8_reference.hpp"

namespace seqgen_fuzz {

inline int fuzz_utf8(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::u32string want;
  const bool valid = ref_utf8(text, want);
  try {
    const std::u32string got = utf8::decode(text, "fuzz");
    SEQGEN_FUZZ_EXPECT(valid, "utf8::decode accepted ill-formed UTF-8");
    SEQGEN_FUZZ_EXPECT(got == want, "utf8::decode gives other code points than the reference");
    SEQGEN_FUZZ_EXPECT(utf8::encode(got) == text, "utf8::encode(decode(s)) != s");
    SEQGEN_FUZZ_EXPECT(utf8::count_characters(text) == got.size(), "count_characters");
  } catch (const FormatError&) {
    SEQGEN_FUZZ_EXPECT(!valid, "utf8::decode refused well-formed UTF-8");
  }
  // decode_one from every offset: it moves forward by the character's length, or throws.
  for (std::size_t start = 0; start < text.size(); ++start) {
    std::size_t pos = start;
    try {
      const char32_t cp = utf8::decode_one(text, pos);
      SEQGEN_FUZZ_EXPECT(pos > start && pos <= start + 4 && pos <= text.size(), "decode_one moved badly");
      SEQGEN_FUZZ_EXPECT(utf8::encode(cp) == text.substr(start, pos - start), "decode_one round trip");
    } catch (const FormatError&) {
    }
  }
  // Each group of 4 bytes as a code point: encodable iff a scalar value, and it decodes back.
  for (std::size_t at = 0; at + 4 <= text.size(); at += 4) {
    const auto cp = static_cast<char32_t>(ref_le(text, at, 4) >> (text[at] & 0x1F));  // spread over all magnitudes
    const bool scalar = cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    try {
      const std::string s = utf8::encode(cp);
      SEQGEN_FUZZ_EXPECT(scalar, "utf8::encode of a non-scalar value");
      std::u32string back;
      SEQGEN_FUZZ_EXPECT(ref_utf8(s, back) && back == std::u32string(1, cp), "utf8::encode gives ill-formed bytes");
    } catch (const FormatError&) {
      SEQGEN_FUZZ_EXPECT(!scalar, "utf8::encode refused a scalar value");
    }
  }
  return 0;
}

inline std::vector<Seed> utf8_seeds() {
  return {{"ascii", "to be or not to be\n"},
          {"unicode", unicode_sample()},
          {"ill_formed", std::string("ok \xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80 \xE2\x98", 17)}};
}

inline const bool registered_utf8 = register_target({"utf8", fuzz_utf8, utf8_seeds, 1024});

}  // namespace seqgen_fuzz
