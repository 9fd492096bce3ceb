// Strict UTF-8 (RFC 3629, Unicode §3.9): bytes <-> code points.
//
//   bytes   first code point   last code point   bit pattern
//   1       U+0000             U+007F            0xxxxxxx
//   2       U+0080             U+07FF            110xxxxx 10xxxxxx
//   3       U+0800             U+FFFF            1110xxxx 10xxxxxx 10xxxxxx
//   4       U+10000            U+10FFFF          11110xxx 10xxxxxx 10xxxxxx 10xxxxxx
//
// Strict means every other byte sequence is rejected: a stray continuation byte, a lead byte that
// cannot start a character (0xC0, 0xC1, 0xF5..0xFF), a truncated sequence, a missing continuation
// byte, an overlong form (a code point in more bytes than it needs), a surrogate (U+D800..U+DFFF)
// and anything above U+10FFFF. The error is a FormatError that names the byte offset and the byte:
//   "invalid UTF-8 at byte offset 3 (byte 0xC0): overlong encoding, ..."
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "seqgen/core/error.hpp"

namespace seqgen::utf8 {

constexpr char32_t max_code_point = 0x10FFFF;

// A Unicode scalar value: a code point that UTF-8 may encode (not a surrogate, not above U+10FFFF).
inline bool is_scalar_value(char32_t cp) { return cp <= max_code_point && (cp < 0xD800 || cp > 0xDFFF); }

// True for the bytes 10xxxxxx, which never start a character.
inline bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// "U+00E9", "U+1F600": at least four upper-case hex digits, as Unicode writes them.
inline std::string code_point_name(char32_t cp) {
  static const char digits[] = "0123456789ABCDEF";
  std::string hex;
  for (std::uint32_t v = cp; v != 0 || hex.size() < 4; v >>= 4) hex.insert(hex.begin(), digits[v & 0xF]);
  return "U+" + hex;
}

// "0xC0": one byte in hex.
inline std::string byte_name(unsigned char byte) {
  static const char digits[] = "0123456789ABCDEF";
  return std::string("0x") + digits[byte >> 4] + digits[byte & 0xF];
}

namespace detail {
[[noreturn]] inline void fail(std::string_view context, std::size_t offset, unsigned char byte, const std::string& why) {
  throw FormatError(seqgen::detail::cat(context, context.empty() ? "" : ": ", "invalid UTF-8 at byte offset ", offset,
                                        " (byte ", byte_name(byte), "): ", why));
}
}  // namespace detail

// Decodes the character that starts at text[pos] and moves pos past it. Requires pos < text.size().
// `context` prefixes the error message, e.g. "Tokenizer::characters".
inline char32_t decode_one(std::string_view text, std::size_t& pos, std::string_view context = {}) {
  const std::size_t start = pos;
  const auto lead = static_cast<unsigned char>(text[start]);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  std::size_t len = 0;
  char32_t cp = 0;
  if (lead < 0xC0) {
    detail::fail(context, start, lead, "a continuation byte (10xxxxxx) cannot start a character");
  } else if (lead < 0xC2) {
    detail::fail(context, start, lead, "overlong encoding: lead bytes 0xC0 and 0xC1 only encode U+0000..U+007F");
  } else if (lead < 0xE0) {
    len = 2, cp = lead & 0x1F;
  } else if (lead < 0xF0) {
    len = 3, cp = lead & 0x0F;
  } else if (lead < 0xF5) {
    len = 4, cp = lead & 0x07;
  } else if (lead < 0xF8) {
    detail::fail(context, start, lead, "lead byte of a code point above U+10FFFF");
  } else {
    detail::fail(context, start, lead, "not a UTF-8 lead byte");
  }
  for (std::size_t k = 1; k < len; ++k) {
    if (start + k >= text.size())
      detail::fail(context, start, lead,
                   seqgen::detail::cat("truncated sequence: the lead byte starts a ", len,
                                       "-byte character but the input ends after ", text.size() - start, " byte(s)"));
    const auto byte = static_cast<unsigned char>(text[start + k]);
    if (!is_continuation(byte))
      detail::fail(context, start + k, byte,
                   seqgen::detail::cat("expected a continuation byte (10xxxxxx) as byte ", k + 1, " of the ", len,
                                       "-byte character that starts at byte offset ", start));
    cp = (cp << 6) | (byte & 0x3F);
  }
  static constexpr char32_t shortest_from[5] = {0, 0, 0x80, 0x800, 0x10000};  // by length in bytes
  if (cp < shortest_from[len])
    detail::fail(context, start, lead,
                 seqgen::detail::cat("overlong encoding of ", code_point_name(cp), " in ", len, " bytes"));
  if (cp >= 0xD800 && cp <= 0xDFFF)
    detail::fail(context, start, lead, seqgen::detail::cat("encodes the surrogate ", code_point_name(cp)));
  if (cp > max_code_point)
    detail::fail(context, start, lead, seqgen::detail::cat("encodes ", code_point_name(cp), ", above U+10FFFF"));
  pos = start + len;
  return cp;
}

// The whole text as code points.
inline std::u32string decode(std::string_view text, std::string_view context = {}) {
  std::u32string out;
  for (std::size_t pos = 0; pos < text.size();) out.push_back(decode_one(text, pos, context));
  return out;
}

// The number of characters in valid UTF-8: the bytes that are not continuation bytes. Does not
// validate; use it to size a buffer before decoding.
inline std::size_t count_characters(std::string_view text) {
  std::size_t n = 0;
  for (char c : text) n += !is_continuation(static_cast<unsigned char>(c));
  return n;
}

// Appends the UTF-8 bytes of one code point.
inline void append(std::string& out, char32_t cp) {
  if (!is_scalar_value(cp))
    throw FormatError(seqgen::detail::cat("utf8::append: ", code_point_name(cp),
                                          " is a surrogate or above U+10FFFF and has no UTF-8 encoding"));
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline std::string encode(char32_t cp) {
  std::string out;
  append(out, cp);
  return out;
}

inline std::string encode(std::u32string_view cps) {
  std::string out;
  for (char32_t cp : cps) append(out, cp);
  return out;
}

}  // namespace seqgen::utf8
