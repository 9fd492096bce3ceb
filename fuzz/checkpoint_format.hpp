// The checkpoint format written again from docs/checkpoint-format.md, independently of
// include/seqgen/io/: a reference parser and a bitwise CRC-32 for the `checkpoint` target to hold
// CheckpointReader against, a repair of the size field and CRC so that mutated entries reach the
// entry parser, and the structure-aware mutator of the three targets whose inputs are checkpoints
// (checkpoint, load_gpt, load_recurrent).
#pragma once

#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "harness.hpp"

namespace seqgen_fuzz {

// CRC-32 one bit at a time, the definition the library's slicing-by-8 must agree with.
inline std::uint32_t ref_crc32(std::string_view b) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (char ch : b) {
    c ^= static_cast<unsigned char>(ch);
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

struct RefEntry {
  std::string key;
  unsigned type = 0;
  std::string payload;
  std::uint64_t rows = 0, cols = 0;  // tensors
};

// Fills `out` and returns true iff `b` is a valid version-1 checkpoint.
inline bool ref_parse_checkpoint(std::string_view b, std::vector<RefEntry>& out) {
  out.clear();
  if (b.size() < 28 || b.substr(0, 8) != "SEQGENCK") return false;
  if (ref_le(b, 8, 4) != 1 || ref_le(b, 16, 8) != b.size()) return false;
  if (ref_le(b, b.size() - 4, 4) != ref_crc32(b.substr(0, b.size() - 4))) return false;
  const std::string_view body = b.substr(24, b.size() - 28);
  std::unordered_set<std::string> keys;
  std::size_t p = 0;
  const auto left = [&] { return body.size() - p; };
  for (std::uint64_t i = 0, count = ref_le(b, 12, 4); i < count; ++i) {
    RefEntry e;
    if (left() < 5) return false;
    e.type = static_cast<unsigned char>(body[p]);
    const std::uint64_t key_size = ref_le(body, p + 1, 4);
    p += 5;
    if (key_size == 0 || key_size > left()) return false;
    e.key = std::string(body.substr(p, key_size));
    p += key_size;
    if (e.type < 1 || e.type > 6 || left() < 8) return false;
    const std::uint64_t size = ref_le(body, p, 8);
    p += 8;
    if (size > left()) return false;
    e.payload = std::string(body.substr(p, size));
    p += size;
    if ((e.type == 1 || e.type == 2) && size != 8) return false;
    if (e.type == 5 || e.type == 6) {
      if (size < 16) return false;
      e.rows = ref_le(e.payload, 0, 8);
      e.cols = ref_le(e.payload, 8, 8);
      const std::uint64_t max_index = std::uint64_t(std::numeric_limits<std::int64_t>::max());
      if (e.rows > max_index || e.cols > max_index) return false;
      const unsigned __int128 data = (unsigned __int128)e.rows * e.cols * (e.type == 5 ? 4 : 8);
      if (data + 16 != size || (unsigned __int128)e.rows * e.cols > max_index) return false;
    }
    if (!keys.insert(e.key).second) return false;
    out.push_back(std::move(e));
  }
  return p == body.size();
}

// Gives `bytes` the size field and CRC of a checkpoint, so mutated entries reach the entry parser
// instead of stopping at the CRC check. Shorter inputs are left alone.
inline std::string repair_checkpoint(std::string bytes) {
  if (bytes.size() < 28) return bytes;
  for (int i = 0; i < 8; ++i) bytes[16 + std::size_t(i)] = static_cast<char>(std::uint64_t(bytes.size()) >> (8 * i));
  const std::uint32_t crc = ref_crc32(std::string_view(bytes).substr(0, bytes.size() - 4));
  for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + std::size_t(i)] = static_cast<char>(crc >> (8 * i));
  return bytes;
}


// Structure-aware mutation for the checkpoint targets (their LLVMFuzzerCustomMutator): half of
// the time the input is parsed (after repair_checkpoint) and one entry is changed to a hostile but
// well-formed value, then the file is encoded again with a correct size field and CRC; otherwise,
// or when the input does not parse, libFuzzer's own byte mutation (`mutate_bytes`) runs.
//   int64    0, ±1, 2^24, 2^31, 2^32, 2^62, INT64_MIN, INT64_MAX, ..., or the value ± 1, × 2
//   float64  ±0, NaN, ±inf, ±1e308, the smallest subnormal, ..., or the value × 2
//   tensor   one element NaN, ±inf, ±3e38 or a subnormal; or a new small shape
//   string   its bytes mutated by `mutate_bytes`
//   any      the entry deleted, or its type changed
// Scalar entries (config, options, step count) are picked half the time, tensors would outnumber them.
inline std::string encode_checkpoint(const std::vector<RefEntry>& entries) {
  std::string body;
  for (const RefEntry& e : entries) {
    put_u8(body, e.type);
    put_u32(body, std::uint32_t(e.key.size()));
    body += e.key;
    put_u32(body, std::uint32_t(e.payload.size()));
    put_u32(body, std::uint32_t(std::uint64_t(e.payload.size()) >> 32));
    body += e.payload;
  }
  std::string out = "SEQGENCK";
  put_u32(out, 1);
  put_u32(out, std::uint32_t(entries.size()));
  out += std::string(8, '\0');
  out += body;
  out += std::string(4, '\0');
  return repair_checkpoint(out);
}

inline std::size_t mutate_checkpoint(std::uint8_t* data, std::size_t size, std::size_t max_size, unsigned seed,
                                     std::size_t (*mutate_bytes)(std::uint8_t*, std::size_t, std::size_t)) {
  Rng rng(seed);
  const auto next = [&](std::uint64_t n) { return rng.uniform_int(n); };  // in [0, n), n > 0
  std::vector<RefEntry> entries;
  if (next(2) == 0 || !ref_parse_checkpoint(repair_checkpoint(std::string(reinterpret_cast<char*>(data), size)),
                                            entries) || entries.empty())
    return mutate_bytes(data, size, max_size);
  std::vector<std::size_t> scalars;
  for (std::size_t i = 0; i < entries.size(); ++i)
    if (entries[i].type < 5) scalars.push_back(i);
  RefEntry& e = entries[!scalars.empty() && next(2) ? scalars[next(scalars.size())] : next(entries.size())];
  const auto set_le = [](std::string& p, std::size_t at, std::uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; ++i) p[at + std::size_t(i)] = static_cast<char>(v >> (8 * i));
  };
  const unsigned op = unsigned(next(10));
  if (op == 0) {
    entries.erase(entries.begin() + std::ptrdiff_t(&e - entries.data()));
  } else if (op == 1) {
    e.type = 1 + unsigned(next(6));  // the payload stays: often refused, sometimes int64 <-> float64
  } else if (e.type == 1) {
    const std::int64_t v = std::int64_t(ref_le(e.payload, 0, 8));
    const std::int64_t interesting[] = {0, 1, -1, 2, 3, 7, 8, 64, 65535, 65536, 1 << 20, (1 << 20) + 1, 1 << 24,
                                        (1 << 24) + 1, std::int64_t(1) << 31, std::int64_t(1) << 32,
                                        std::int64_t(1) << 62, std::numeric_limits<std::int64_t>::max(),
                                        std::numeric_limits<std::int64_t>::max() - 1,
                                        std::numeric_limits<std::int64_t>::min(), v / 2,
                                        std::int64_t(std::uint64_t(v) + 1), std::int64_t(std::uint64_t(v) - 1),
                                        std::int64_t(std::uint64_t(v) * 2)};
    set_le(e.payload, 0, std::uint64_t(interesting[next(sizeof interesting / sizeof *interesting)]), 8);
  } else if (e.type == 2) {
    double v;
    const std::uint64_t old = ref_le(e.payload, 0, 8);
    std::memcpy(&v, &old, 8);
    const double interesting[] = {0.0, -0.0, std::nan(""), INFINITY, -INFINITY, 1e308, -1e308, 4.9e-324, 1.0,
                                  -1.0, 0.5, 0.999999, 1.0000001, 1e-300, v * 2, -v};
    const double w = interesting[next(sizeof interesting / sizeof *interesting)];
    std::uint64_t bits;
    std::memcpy(&bits, &w, 8);
    set_le(e.payload, 0, bits, 8);
  } else if (e.type == 5 || e.type == 6) {
    const std::size_t elem = e.type == 5 ? 4 : 8, n = (e.payload.size() - 16) / elem;
    if (n > 0 && next(3) != 0) {
      const std::uint64_t f32[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x7F7FFFFFu, 0xFF7FFFFFu, 1u, 0x80000000u};
      const std::uint64_t f64[] = {0x7FF8000000000000ull, 0x7FF0000000000000ull, 0xFFF0000000000000ull,
                                   0x7FEFFFFFFFFFFFFFull, 1ull, 0x8000000000000000ull, 0x47EFFFFFE0000000ull};
      const std::size_t k = next(7);
      set_le(e.payload, 16 + next(n) * elem, elem == 4 ? f32[k] : f64[k], int(elem));
    } else {
      const std::uint64_t rows = next(9), cols = next(9);
      std::string p(16 + rows * cols * elem, '\0');
      set_le(p, 0, rows, 8);
      set_le(p, 8, cols, 8);
      for (std::size_t i = 16; i < p.size(); ++i) p[i] = i - 16 < e.payload.size() - 16 ? e.payload[i] : char(next(256));
      e.payload = p;
    }
  } else {  // string, bytes
    std::string p = e.payload.empty() ? std::string(1, char(next(256))) : e.payload;
    const std::size_t used = p.size();
    p.resize(used * 2 + 16);
    p.resize(mutate_bytes(reinterpret_cast<std::uint8_t*>(&p[0]), used, p.size()));
    e.payload = p;
  }
  const std::string out = encode_checkpoint(entries);
  if (out.size() > max_size) return mutate_bytes(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace seqgen_fuzz
