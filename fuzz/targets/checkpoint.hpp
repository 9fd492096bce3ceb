// Target `checkpoint`: CheckpointReader::from_bytes and ::load (one input in eight, from a file),
// every getter, and CheckpointWriter, against the reference parser of checkpoint_format.hpp.
// The reader must accept exactly what the reference accepts, with the same values; the writer must
// rewrite an accepted file byte for byte; crc32 must equal the bitwise CRC-32. Each input is
// parsed as is and with its size field and CRC repaired.
// Input: a checkpoint file (mutated by mutate_checkpoint half of the time).
#pragma once

#include <cstring>
#include <type_traits>

#include "../checkpoint_format.hpp"
#include "../tiny_models.hpp"

namespace seqgen_fuzz {

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

inline std::vector<Seed> checkpoint_seeds() {
  std::vector<Seed> seeds;
  {
    CheckpointWriter w;  // the example of docs/checkpoint-format.md
    w.put_int("a", 0x0102030405060708);
    Mat<float> t(1, 2);
    t << 1, -2;
    w.put_tensor("t", t);
    seeds.push_back({"format_example", w.to_bytes()});
  }
  {
    CheckpointWriter w;
    w.put_int("int", -5);
    w.put_double("double", 0.25);
    w.put_string("string", "gpt");
    w.put_string("empty", "");
    w.put_bytes("bytes", std::string("\x00\x01\xFF", 3));
    Mat<float> f(2, 3);
    f << 1, 2, 3, 4, 5, 6;
    w.put_tensor("param/f32", f);
    Mat<double> d(1, 2);
    d << 0.5, -1e300;
    w.put_tensor("param/f64", d);
    w.put_tensor("param/none", Mat<float>(0, 3));
    seeds.push_back({"every_type", w.to_bytes()});
  }
  seeds.push_back({"no_entries", CheckpointWriter().to_bytes()});
  {
    CheckpointWriter w;  // what load_model reads, without the training state
    Rng rng(3);
    Gpt<float> model(tiny_gpt(true, 1), rng);
    w.put_string("model.kind", "gpt");
    write_config(w, model.config);
    w.put_bytes("tokenizer", fixed_tokenizer().to_bytes());
    write_params(w, model);
    seeds.push_back({"gpt_model", w.to_bytes()});
  }
  return seeds;
}

inline const bool registered_checkpoint =
    register_target({"checkpoint", fuzz_checkpoint, checkpoint_seeds, 16384, mutate_checkpoint});

}  // namespace seqgen_fuzz
