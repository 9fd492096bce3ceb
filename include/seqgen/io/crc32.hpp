// CRC-32 as in IEEE 802.3, zlib, gzip and PNG: reflected polynomial 0xEDB88320, initial value and
// final XOR 0xFFFFFFFF.  Check value: crc32("123456789") == 0xCBF43926.
//
// Table-driven, eight bytes per step ("slicing-by-8", Kounavis & Berry, 2005):
//   T[0][b] = b shifted through 8 steps of  c = (c >> 1) ^ (0xEDB88320 if c & 1)   (the classic table)
//   T[k][b] = (T[k-1][b] >> 8) ^ T[0][T[k-1][b] & 0xFF]                           (b followed by k zero bytes)
// so eight look-ups advance the CRC over eight bytes: several GB/s instead of ~0.5 GB/s a byte at a time.
// Bytes are combined with shifts, never by loading a word, so the result does not depend on the host's
// endianness or alignment.
//
// Chaining follows zlib: crc32_update(crc32(a), b, n) == crc32(a followed by b), and crc32_update(0, ...)
// starts a new CRC.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace seqgen {

namespace detail {

using Crc32Tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr Crc32Tables make_crc32_tables() {
  Crc32Tables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    t[0][b] = c;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  return t;
}

inline constexpr Crc32Tables kCrc32Tables = make_crc32_tables();

inline std::uint32_t load_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}

}  // namespace detail

// Continues `crc` (the CRC of the bytes seen so far, 0 for none) over `size` more bytes.
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  const auto& t = detail::kCrc32Tables;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    const std::uint32_t lo = crc ^ detail::load_le32(p);  // the first byte is 7 bytes from the end: T[7]
    const std::uint32_t hi = detail::load_le32(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^  //
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; size > 0; ++p, --size) crc = t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// CRC-32 of a whole byte string.
inline std::uint32_t crc32(std::string_view bytes) { return crc32_update(0, bytes.data(), bytes.size()); }

}  // namespace seqgen
