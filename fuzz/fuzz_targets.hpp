// The fuzz targets: one entry function per reader of outside bytes, shared by the libFuzzer
// program (fuzz/seqgen_fuzz.cpp, built by scripts/fuzz.sh) and by the regression test
// (tests/test_fuzz_regressions.cpp), which replays the seed corpus and every saved crash input
// through the very same functions.
//
//   target           what reads the bytes
//   checkpoint       CheckpointReader::from_bytes and ::load, every getter, CheckpointWriter
//   load_gpt         load_model<Gpt<float>>, Tokenizer::from_bytes, generation, Trainer::load, one step
//   load_recurrent   the same for the RNN, LSTM and GRU models (chosen by the file's model.kind)
//   tokenizer        Tokenizer::from_bytes / characters, decode, decode_token, encode
//   utf8             utf8::decode, decode_one, count_characters, append / encode
//   dataset          read_text_file, TokenDataset::from_text / from_file, the three batchers
//   stop_strings     StopStrings::feed / take / flush on text cut into arbitrary pieces
//   generate         a prompt, stop strings and sampling options given to generate_samples
//
// Contract of every entry function fuzz_<target>(data, size):
//   - hostile bytes may make seqgen throw: a seqgen::Error is a normal outcome and is caught here;
//   - everything else is a finding and escapes: a FuzzFinding (a property checked below does not
//     hold), std::bad_alloc, any other exception; crashes and sanitizer reports abort the process.
// Beyond "no crash", each target checks properties against an independent computation: a
// reference parser of the checkpoint format and a bitwise CRC-32, a reference UTF-8 validator
// (Unicode Table 3-7), round trips (encode ∘ decode, writer ∘ reader), and stop strings matched
// by brute force.
//
// Multi-part inputs are framed by FuzzInput: fixed-width little-endian numbers and
// length-prefixed byte strings, read until the input runs out (then zeros and empty strings), so
// every byte string is a valid input. The seed writers (put_*) build the same framing.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "seqgen/seqgen.hpp"

namespace seqgen_fuzz {

using namespace seqgen;

// A property of the library that did not hold: not a seqgen::Error, so nothing catches it.
struct FuzzFinding : std::logic_error {
  using std::logic_error::logic_error;
};

#define SEQGEN_FUZZ_EXPECT(cond, what)                                                              \
  do {                                                                                              \
    if (!(cond))                                                                                    \
      throw ::seqgen_fuzz::FuzzFinding(std::string(__FILE__ ":") + std::to_string(__LINE__) + ": " + \
                                       (what) + " (failed: " #cond ")");                            \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Input framing

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}

  std::uint8_t u8() { return pos_ < n_ ? static_cast<std::uint8_t>(p_[pos_++]) : 0; }
  std::uint16_t u16() {
    const unsigned lo = u8();
    return static_cast<std::uint16_t>(lo | unsigned(u8()) << 8);
  }
  std::uint32_t u32() {
    const std::uint32_t lo = u16();
    return lo | std::uint32_t(u16()) << 16;
  }
  // Up to `count` bytes: fewer when the input ends first.
  std::string_view bytes(std::size_t count) {
    count = std::min(count, n_ - pos_);
    const std::string_view out(p_ + pos_, count);
    pos_ += count;
    return out;
  }
  std::string_view sized8() { return bytes(u8()); }    // u8 length, then the bytes
  std::string_view sized16() { return bytes(u16()); }  // u16 length, then the bytes
  std::string_view rest() { return bytes(n_ - pos_); }

 private:
  const char* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

inline void put_u8(std::string& out, unsigned v) { out += static_cast<char>(v & 0xFF); }
inline void put_u16(std::string& out, unsigned v) {
  put_u8(out, v);
  put_u8(out, v >> 8);
}
inline void put_u32(std::string& out, std::uint32_t v) {
  put_u16(out, v & 0xFFFF);
  put_u16(out, v >> 16);
}
inline void put_sized8(std::string& out, std::string_view s) {
  put_u8(out, static_cast<unsigned>(s.size()));
  out += s;
}
inline void put_sized16(std::string& out, std::string_view s) {
  put_u16(out, static_cast<unsigned>(s.size()));
  out += s;
}

// A file holding `bytes` for the lifetime of this object, for the readers that take a path.
// Named by target and pid, so parallel fuzzers never share one.
class TempFile {
 public:
  TempFile(const char* target, std::string_view bytes) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/seqgen_fuzz_" + target + "_" + std::to_string(::getpid());
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) throw std::runtime_error("fuzz harness: cannot create " + path_);
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    if (std::fclose(f) != 0 || !ok) throw std::runtime_error("fuzz harness: cannot write " + path_);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// checkpoint: the reader against a reference parser written from docs/checkpoint-format.md

inline std::uint64_t ref_le(std::string_view b, std::size_t at, int nbytes) {
  std::uint64_t v = 0;
  for (int i = nbytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(b[at + std::size_t(i)]);
  return v;
}

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

template <typename Scalar>
void check_tensor_entry(const CheckpointReader& r, const RefEntry& e, CheckpointWriter& rewrite) {
  using Bits = std::conditional_t<sizeof(Scalar) == 4, std::uint32_t, std::uint64_t>;
  Mat<Scalar> m;
  r.get_tensor(e.key, m, Index(e.rows), Index(e.cols));  // the shape the reference read: must not throw
  SEQGEN_FUZZ_EXPECT(m.rows() == Index(e.rows) && m.cols() == Index(e.cols), "tensor '" + e.key + "' shape");
  for (Index i = 0; i < m.size(); ++i) {
    Bits bits;
    std::memcpy(&bits, m.data() + i, sizeof bits);
    SEQGEN_FUZZ_EXPECT(bits == ref_le(e.payload, 16 + std::size_t(i) * sizeof bits, int(sizeof bits)),
                       "tensor '" + e.key + "' element " + std::to_string(i));
  }
  // Any other shape or precision is refused.
  bool threw = false;
  try {
    r.check_tensor<Scalar>(e.key, Index(e.rows) ^ 1, Index(e.cols));
  } catch (const FormatError&) {
    threw = true;
  }
  SEQGEN_FUZZ_EXPECT(threw, "tensor '" + e.key + "' read with a wrong shape");
  rewrite.put_tensor(e.key, m);
}

// Every getter of an accepted file against the reference entries, and the file rewritten by
// CheckpointWriter, which must give back the same bytes.
inline void check_accepted(const CheckpointReader& r, const std::vector<RefEntry>& entries, std::string_view bytes) {
  SEQGEN_FUZZ_EXPECT(r.version() == 1 && r.size_bytes() == bytes.size(), "header");
  const std::vector<std::string> keys = r.keys();
  SEQGEN_FUZZ_EXPECT(keys.size() == entries.size(), "entry count");
  CheckpointWriter rewrite;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const RefEntry& e = entries[i];
    SEQGEN_FUZZ_EXPECT(keys[i] == e.key && r.has(e.key), "key order");
    switch (e.type) {
      case 1:
        SEQGEN_FUZZ_EXPECT(std::uint64_t(r.get_int(e.key)) == ref_le(e.payload, 0, 8), "int64 '" + e.key + "'");
        rewrite.put_int(e.key, r.get_int(e.key));
        break;
      case 2: {
        const double v = r.get_double(e.key);
        std::uint64_t bits;
        std::memcpy(&bits, &v, 8);
        SEQGEN_FUZZ_EXPECT(bits == ref_le(e.payload, 0, 8), "float64 '" + e.key + "'");
        rewrite.put_double(e.key, v);
        break;
      }
      case 3:
        SEQGEN_FUZZ_EXPECT(r.get_string(e.key) == e.payload, "string '" + e.key + "'");
        rewrite.put_string(e.key, r.get_string(e.key));
        break;
      case 4:
        SEQGEN_FUZZ_EXPECT(r.get_bytes(e.key) == e.payload, "bytes '" + e.key + "'");
        rewrite.put_bytes(e.key, r.get_bytes(e.key));
        break;
      case 5: check_tensor_entry<float>(r, e, rewrite); break;
      case 6: check_tensor_entry<double>(r, e, rewrite); break;
      default: SEQGEN_FUZZ_EXPECT(false, "reference accepted an unknown type");
    }
    // A getter of another type is refused.
    bool threw = false;
    try {
      if (e.type == 1) r.get_string(e.key);
      else r.get_int(e.key);
    } catch (const FormatError&) {
      threw = true;
    }
    SEQGEN_FUZZ_EXPECT(threw, "entry '" + e.key + "' read as another type");
  }
  SEQGEN_FUZZ_EXPECT(rewrite.to_bytes() == bytes, "CheckpointWriter does not give back the file it read");
}

// One parse of `bytes`, in memory and (for one input in eight) from a file: the reader accepts
// exactly what the reference accepts.
inline void checkpoint_once(const std::string& bytes, bool from_file) {
  std::vector<RefEntry> entries;
  const bool valid = ref_parse_checkpoint(bytes, entries);
  SEQGEN_FUZZ_EXPECT(crc32(bytes) == ref_crc32(bytes), "crc32 disagrees with the bitwise CRC-32");
  try {
    const CheckpointReader r = from_file ? CheckpointReader::load(TempFile("checkpoint", bytes).path())
                                         : CheckpointReader::from_bytes(bytes);
    SEQGEN_FUZZ_EXPECT(valid, "CheckpointReader accepted a file the reference parser refuses");
    check_accepted(r, entries, bytes);
  } catch (const FormatError&) {
    SEQGEN_FUZZ_EXPECT(!valid, "CheckpointReader refused a file the reference parser accepts");
  }
}

inline int fuzz_checkpoint(const std::uint8_t* data, std::size_t size) {
  const std::string raw(reinterpret_cast<const char*>(data), size);
  const bool from_file = size % 8 == 0;
  checkpoint_once(raw, from_file);
  if (size >= 28) checkpoint_once(repair_checkpoint(raw), from_file);
  return 0;
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

// ---------------------------------------------------------------------------------------------
// load_gpt, load_recurrent: whole models and training runs from a checkpoint

// The text every seed training run read; Trainer::load refuses a checkpoint of another text.
inline const std::string& fixed_text() {
  static const std::string text = [] {
    std::string t;
    for (int i = 0; i < 12; ++i) t += "to be or not to be, that is the question.\n";
    return t;
  }();
  return text;
}
inline const Tokenizer& fixed_tokenizer() {
  static const Tokenizer tok = Tokenizer::characters(fixed_text());
  return tok;
}
inline const TokenDataset& fixed_dataset() {
  static const TokenDataset data = TokenDataset::from_text(fixed_text(), fixed_tokenizer(), 0.1);
  return data;
}

// What `generate` does with a checkpoint: the model, its tokenizer, a few tokens.
template <typename Model>
void generate_from(const CheckpointReader& r) {
  const Model model = load_model<Model>(r, "fuzz");
  const Tokenizer tok = Tokenizer::from_bytes(r.get_bytes("tokenizer"));
  Rng rng(1);
  SamplingOptions options;
  options.top_k = 5;
  options.top_p = 0.9;
  generate_samples(model, tok, "to be", 2, 4, options, rng);
  generate_samples(model, tok, "", 1, 2, SamplingOptions{}, rng);  // from the start token
}

// What `train --resume` does: the whole run, then a step and an evaluation when the stored batch
// is small (a checkpoint may ask for a batch of 2^20 windows, which is the user's business).
template <typename Model>
void resume_from(const CheckpointReader& r) {
  Trainer<Model> t = Trainer<Model>::load(r, "fuzz", fixed_dataset());
  if (t.options.batch * t.options.seq_len > 64) return;
  t.step();
  t.evaluate(Split::val, 1);
}

// Every model kind is loaded, decoded and trained one step (the library builds with clang too).
#define SEQGEN_FUZZ_RNN_GRU_DECODE_AND_TRAIN 1

template <typename Model, bool kDecodeAndTrain = true>
void load_both(const CheckpointReader& r) {
  if constexpr (!kDecodeAndTrain) {
    try {
      load_model<Model>(r, "fuzz");
      Tokenizer::from_bytes(r.get_bytes("tokenizer"));
    } catch (const Error&) {
    }
  } else {
    try {
      generate_from<Model>(r);
    } catch (const Error&) {
    }
    try {
      resume_from<Model>(r);
    } catch (const Error&) {
    }
  }
}

// The input with its size field and CRC repaired (see repair_checkpoint).
inline int fuzz_load_gpt(const std::uint8_t* data, std::size_t size) {
  try {
    const CheckpointReader r =
        CheckpointReader::from_bytes(repair_checkpoint(std::string(reinterpret_cast<const char*>(data), size)));
    load_both<Gpt<float>>(r);
  } catch (const Error&) {
  }
  return 0;
}

inline int fuzz_load_recurrent(const std::uint8_t* data, std::size_t size) {
  try {
    const CheckpointReader r =
        CheckpointReader::from_bytes(repair_checkpoint(std::string(reinterpret_cast<const char*>(data), size)));
    const std::string kind = checkpoint_model_kind(r);
    constexpr bool kFull = SEQGEN_FUZZ_RNN_GRU_DECODE_AND_TRAIN;
    if (kind == "rnn") load_both<RnnLm<float>, kFull>(r);
    else if (kind == "gru") load_both<GruLm<float>, kFull>(r);
    else load_both<LstmLm<float>>(r);  // any other kind must be refused by name
  } catch (const Error&) {
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// utf8: the decoder against a validator written from Unicode Table 3-7 (well-formed sequences)

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

// ---------------------------------------------------------------------------------------------
// tokenizer: [sized16 serialized tokenizer] [sized16 ids, 2 bytes each, signed] [rest: text]

// Decoding `ids` with `tok`: the whole sequence, token by token, and back through encode.
inline void check_decode(const Tokenizer& tok, const std::vector<Token>& ids) {
  std::string whole;
  try {
    whole = tok.decode(ids);
  } catch (const IndexError&) {
    bool any_bad = false;
    for (Token id : ids) any_bad |= id < 0 || id >= tok.vocab_size();
    SEQGEN_FUZZ_EXPECT(any_bad, "decode refused ids that are all in range");
    return;
  }
  std::string pieces;
  for (Token id : ids) pieces += tok.decode_token(id);
  SEQGEN_FUZZ_EXPECT(pieces == whole, "decode differs from decode_token piece by piece");
  if (tok.kind() == Tokenizer::Kind::characters) {
    std::u32string cps;
    SEQGEN_FUZZ_EXPECT(ref_utf8(whole, cps), "decode gave ill-formed UTF-8");
  }
  SEQGEN_FUZZ_EXPECT(tok.encode(whole) == ids, "encode(decode(ids)) != ids");
}

inline void check_encode(const Tokenizer& tok, std::string_view text) {
  std::vector<Token> ids;
  try {
    ids = tok.encode(text);
  } catch (const FormatError&) {
    std::u32string cps;
    SEQGEN_FUZZ_EXPECT(tok.kind() == Tokenizer::Kind::characters && !ref_utf8(text, cps),
                       "encode refused well-formed text as ill-formed");
    return;
  } catch (const IndexError&) {
    SEQGEN_FUZZ_EXPECT(tok.kind() == Tokenizer::Kind::characters, "a bytes tokenizer refused a byte");
    return;
  }
  for (Token id : ids) SEQGEN_FUZZ_EXPECT(id >= 0 && id < tok.vocab_size(), "encode gave an id out of range");
  SEQGEN_FUZZ_EXPECT(tok.decode(ids) == text, "decode(encode(text)) != text");
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

inline int fuzz_tokenizer(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::string_view blob = in.sized16(), id_bytes = in.sized16(), text = in.rest();
  std::vector<Token> ids;
  for (std::size_t i = 0; i + 2 <= id_bytes.size(); i += 2)
    ids.push_back(static_cast<std::int16_t>(ref_le(id_bytes, i, 2)));

  std::vector<Tokenizer> toks = {Tokenizer::bytes()};
  try {
    toks.push_back(Tokenizer::from_bytes(blob));
    SEQGEN_FUZZ_EXPECT(toks.back().to_bytes() == blob, "Tokenizer::to_bytes(from_bytes(blob)) != blob");
    SEQGEN_FUZZ_EXPECT(Tokenizer::from_bytes(toks.back().to_bytes()) == toks.back(), "tokenizer round trip");
  } catch (const FormatError&) {
  }
  std::u32string cps;
  const bool well_formed = ref_utf8(text, cps);
  try {
    const Tokenizer chars = characters_of(text);
    SEQGEN_FUZZ_EXPECT(well_formed && !text.empty(), "a vocabulary from ill-formed or empty text");
    SEQGEN_FUZZ_EXPECT(chars.encode(text).size() == cps.size(), "characters cannot encode its corpus");
    // Tokenizer::characters scans every code point (slow under the sanitizers): one input in 64.
    if (text.size() % 64 == 3)
      SEQGEN_FUZZ_EXPECT(Tokenizer::characters(text) == chars, "Tokenizer::characters differs from the reference");
    toks.push_back(chars);
  } catch (const FormatError&) {  // ill-formed UTF-8, or more distinct characters than ids
  } catch (const ConfigError&) {  // empty text
  }
  for (const Tokenizer& tok : toks) {
    check_decode(tok, ids);
    check_encode(tok, text);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// dataset: [u8 flags] [u8 val fraction] [u8 B] [u8 T] [rest: the text]
//   flags bit 0-1: tokenizer bytes / characters of the text / characters of fixed_text()
//   flags bit 2:   an out-of-range val fraction instead (must be refused)

inline int fuzz_dataset(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const unsigned flags = in.u8();
  double val_fraction = in.u8() / 256.0;
  const Index B = 1 + in.u8() % 8, T = 1 + in.u8() % 16;
  const std::string_view text = in.rest();
  if (flags & 4) {
    static const double bad[] = {-0.25, 1.0, 2.0, std::nan(""), INFINITY, -INFINITY};
    val_fraction = bad[flags / 8 % 6];
  }
  try {
    Tokenizer tok;
    switch (flags & 3) {
      case 1: tok = characters_of(text); break;
      case 2: tok = fixed_tokenizer(); break;
      default: tok = Tokenizer::bytes(); break;
    }
    const TokenDataset d = TokenDataset::from_text(text, tok, val_fraction);
    SEQGEN_FUZZ_EXPECT(!(flags & 4), "a val fraction out of [0, 1) was accepted");
    {
      const TempFile file("dataset", text);
      const TokenDataset f = TokenDataset::from_file(file.path(), tok, val_fraction);
      SEQGEN_FUZZ_EXPECT(f.size() == d.size() && f.size(Split::val) == d.size(Split::val) &&
                             f.checksum(Split::train) == d.checksum(Split::train) &&
                             f.checksum(Split::val) == d.checksum(Split::val),
                         "from_file differs from from_text");
    }
    const std::vector<Token> want = tok.encode(text);
    const Index n = Index(want.size()), n_train = d.size(Split::train);
    SEQGEN_FUZZ_EXPECT(d.size() == n && n_train + d.size(Split::val) == n &&
                           std::abs(double(d.size(Split::val)) - double(n) * val_fraction) <= 1.0,
                       "split sizes");
    for (Split split : {Split::train, Split::val}) {
      const Index offset = split == Split::train ? 0 : n_train;
      for (Index i = 0; i < d.size(split); ++i)
        SEQGEN_FUZZ_EXPECT(d.at(split, i) == want[std::size_t(offset + i)], "TokenDataset::at");
      std::vector<Token> x, y;
      try {
        Rng rng(flags);
        d.sample_windows(split, B, T, rng, x, y);
        SEQGEN_FUZZ_EXPECT(Index(x.size()) == B * T && Index(y.size()) == B * T, "sample_windows size");
        for (Index b = 0; b < B; ++b)
          for (Index t = 0; t + 1 < T; ++t)
            SEQGEN_FUZZ_EXPECT(y[std::size_t(b * T + t)] == x[std::size_t(b * T + t + 1)], "sample_windows shift");
      } catch (const ConfigError&) {
        SEQGEN_FUZZ_EXPECT(d.size(split) < T + 1, "sample_windows refused a long enough split");
      }
      const Index windows = d.num_eval_windows(split, T);
      if (windows > 0) {
        const Index count = std::min(windows, B);
        d.eval_windows(split, windows - count, count, T, x, y);
        for (Index b = 0; b < count; ++b)
          for (Index t = 0; t < T; ++t) {
            const Index s = offset + (windows - count + b) * T + t;
            SEQGEN_FUZZ_EXPECT(x[std::size_t(b * T + t)] == want[std::size_t(s)] &&
                                   y[std::size_t(b * T + t)] == want[std::size_t(s + 1)],
                               "eval_windows");
          }
      }
      try {
        StreamBatcher streams(d, split, B, T);
        const Index L = streams.stream_length();
        for (Index step = 0; step < 3; ++step) {
          const Index c = streams.cursor();
          bool wrapped = false;
          streams.next(x, y, wrapped);
          SEQGEN_FUZZ_EXPECT(wrapped == (c == 0), "StreamBatcher wrapped");
          for (Index b = 0; b < B; ++b)
            for (Index t = 0; t < T; ++t)
              SEQGEN_FUZZ_EXPECT(x[std::size_t(b * T + t)] == want[std::size_t(offset + b * L + c + t)] &&
                                     y[std::size_t(b * T + t)] == want[std::size_t(offset + b * L + c + t + 1)],
                                 "StreamBatcher::next");
        }
      } catch (const ConfigError&) {
        SEQGEN_FUZZ_EXPECT(d.size(split) / B < T + 1, "StreamBatcher refused a long enough split");
      }
    }
  } catch (const Error&) {
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// stop_strings: [u8 count (0..4)] [count × sized8 stop string] [u32 cut seed] [rest: the text]

// Brute force: the first end position at which some stop string is complete; for equal ends the
// longest, for equal strings the lowest index. Returns the index, or -1; `start` is its start.
inline Index ref_first_stop(const std::vector<std::string>& stops, const std::string& text, std::size_t& start) {
  for (std::size_t end = 1; end <= text.size(); ++end) {
    Index best = -1;
    for (std::size_t i = 0; i < stops.size(); ++i) {
      const std::string& s = stops[i];
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0 &&
          (best < 0 || s.size() > stops[std::size_t(best)].size())) {
        best = Index(i);
      }
    }
    if (best >= 0) {
      start = end - stops[std::size_t(best)].size();
      return best;
    }
  }
  return -1;
}

inline int fuzz_stop_strings(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  std::vector<std::string> stops(in.u8() % 5);
  for (std::string& s : stops) s = std::string(in.sized8());
  std::uint32_t cut_seed = in.u32();
  const std::string text(in.rest());
  try {
    StopStrings probe(stops);
  } catch (const ConfigError&) {
    bool any_empty = false;
    for (const std::string& s : stops) any_empty |= s.empty();
    SEQGEN_FUZZ_EXPECT(any_empty, "StopStrings refused non-empty stop strings");
    return 0;
  }
  std::size_t start = 0;
  const Index want = ref_first_stop(stops, text, start);
  const std::string want_text = want >= 0 ? text.substr(0, start) : text;
  // Three ways to cut the text: whole, byte by byte, and pieces of 0..7 bytes from the seed.
  for (int way = 0; way < 3; ++way) {
    StopStrings ss(stops);
    std::string printed;
    bool stopped = false;
    for (std::size_t pos = 0; pos <= text.size() && !stopped;) {
      std::size_t len = text.size() - pos;
      if (way == 1) len = std::min<std::size_t>(1, len);
      if (way == 2) {
        cut_seed = cut_seed * 1103515245u + 12345u;
        len = std::min<std::size_t>(cut_seed >> 16 & 7, len);
      }
      stopped = ss.feed(std::string_view(text).substr(pos, len));
      printed += ss.take();
      // Streaming never prints what a later piece could turn into (part of) a stop string.
      SEQGEN_FUZZ_EXPECT(want_text.compare(0, printed.size(), printed) == 0 && printed.size() <= want_text.size(),
                         "StopStrings printed text that is not a prefix of the final text");
      if (pos == text.size()) break;
      pos += len;
    }
    printed += ss.flush();
    SEQGEN_FUZZ_EXPECT(ss.stopped() == (want >= 0) && ss.matched() == want, "StopStrings matched the wrong stop");
    SEQGEN_FUZZ_EXPECT(ss.text() == want_text && printed == want_text, "StopStrings text");
    SEQGEN_FUZZ_EXPECT(ss.held() == 0, "StopStrings holds text after flush");
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// generate: [u8 model] [u8 samples] [u8 new tokens] [5 × u8 option choices] [u8 stop count]
//           [stop count × sized8 stop string] [rest: the prompt]
// The models are tiny and built once with fixed weights; only the prompt and options are fuzzed.

inline const Gpt<float>& fixed_gpt() {
  static const Gpt<float> model = [] {
    GptConfig c;
    c.vocab_size = fixed_tokenizer().vocab_size();
    c.context = 8;
    c.channels = 8;
    c.layers = 1;
    c.heads = 2;
    Rng rng(7);
    return Gpt<float>(c, rng);
  }();
  return model;
}
inline const LstmLm<float>& fixed_lstm() {
  static const LstmLm<float> model = [] {
    RecurrentConfig c;
    c.cell = CellKind::lstm;
    c.vocab_size = fixed_tokenizer().vocab_size();
    c.embedding = 4;
    c.hidden = 8;
    c.layers = 1;
    Rng rng(7);
    return LstmLm<float>(c, rng);
  }();
  return model;
}

template <typename Model>
void generate_checked(const Model& model, const Tokenizer& tok, const std::string& prompt, Index samples,
                      Index new_tokens, const SamplingOptions& options) {
  Rng rng(3);
  std::vector<std::string> streamed(std::size_t(std::max<Index>(samples, 0)));
  const std::vector<std::string> out = generate_samples(
      model, tok, prompt, samples, new_tokens, options, rng,
      [&](Index b, const std::string& piece) { streamed.at(std::size_t(b)) += piece; });
  SEQGEN_FUZZ_EXPECT(Index(out.size()) == samples, "one text per sample");
  for (std::size_t b = 0; b < out.size(); ++b) {
    SEQGEN_FUZZ_EXPECT(streamed[b] == out[b], "the streamed pieces differ from the returned text");
    SEQGEN_FUZZ_EXPECT(Index(utf8::count_characters(out[b])) <= new_tokens, "more characters than new tokens");
    for (const std::string& s : options.stop)
      SEQGEN_FUZZ_EXPECT(out[b].find(s) == std::string::npos, "a stop string appears in the output");
  }
}

inline int fuzz_generate(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const unsigned model = in.u8();
  const Index samples = Index(in.u8() % 4);       // 0 must be refused
  const Index new_tokens = Index(in.u8() % 12) - 1;  // -1 must be refused
  static const double temperatures[] = {1.0, 0.0, 0.7, 2.0, 1e-30, 1e30, -1.0, std::nan(""), INFINITY};
  static const double top_ps[] = {1.0, 0.9, 0.5, 1e-9, 0.0, 1.5, std::nan("")};
  static const double min_ps[] = {0.0, 0.05, 0.5, 1.0, -0.1, 2.0, std::nan("")};
  static const double penalties[] = {1.0, 1.3, 0.5, 1e-30, 1e30, 0.0, std::nan(""), INFINITY};
  static const Index last_ns[] = {64, 0, -1, 3, -2};
  SamplingOptions options;
  options.temperature = temperatures[in.u8() % 9];
  options.top_k = Index(in.u8()) - 4;  // a few negative ones
  options.top_p = top_ps[in.u8() % 7];
  options.min_p = min_ps[in.u8() % 7];
  const unsigned penalty = in.u8();
  options.repeat_penalty = penalties[penalty % 8];
  options.repeat_last_n = last_ns[penalty / 8 % 5];
  options.stop.resize(in.u8() % 4);
  for (std::string& s : options.stop) s = std::string(in.sized8());
  const std::string prompt(in.rest());
  try {
    if (model & 1) generate_checked(fixed_lstm(), fixed_tokenizer(), prompt, samples, new_tokens, options);
    else generate_checked(fixed_gpt(), fixed_tokenizer(), prompt, samples, new_tokens, options);
  } catch (const Error&) {
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

struct FuzzTarget {
  const char* name;
  int (*run)(const std::uint8_t*, std::size_t);
  bool checkpoint_input;  // its inputs are checkpoint files: mutate them with mutate_checkpoint
};

inline const std::vector<FuzzTarget>& all_targets() {
  static const std::vector<FuzzTarget> targets = {
      {"checkpoint", fuzz_checkpoint, true},     {"load_gpt", fuzz_load_gpt, true},
      {"load_recurrent", fuzz_load_recurrent, true}, {"tokenizer", fuzz_tokenizer, false},
      {"utf8", fuzz_utf8, false},                {"dataset", fuzz_dataset, false},
      {"stop_strings", fuzz_stop_strings, false}, {"generate", fuzz_generate, false},
  };
  return targets;
}

}  // namespace seqgen_fuzz
