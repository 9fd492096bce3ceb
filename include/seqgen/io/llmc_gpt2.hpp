// llm.c's GPT-2 checkpoint (gpt2_124M.bin, written by llm.c's train_gpt2.py), read into and
// written from a seqgen Gpt.
//
//   header   256 int32, little-endian: [0] magic 20240326, [1] version (3: float32 weights,
//            5: bfloat16), [2] maxT (context), [3] V, [4] L, [5] NH, [6] C, [7] Vp (V padded, llm.c
//            pads to a multiple of 128); the rest zero
//   weights  16 tensors, row-major, each kind stacked over the L layers, in this order:
//            wte (Vp, C)  wpe (maxT, C)  ln1w (L, C)  ln1b (L, C)  qkvw (L, 3C, C)  qkvb (L, 3C)
//            attprojw (L, C, C)  attprojb (L, C)  ln2w (L, C)  ln2b (L, C)  fcw (L, 4C, C)
//            fcb (L, 4C)  fcprojw (L, C, 4C)  fcprojb (L, C)  lnfw (C)  lnfb (C)
// The matrices are PyTorch Linear weights, (out, in) row-major; seqgen's Linear keeps (out, in)
// column-major, so they are transposed on the way (by blocks of rows). wte and wpe rows are
// seqgen's (C, V) / (C, context) columns: the same memory. The head is tied to wte (llm.c has no
// other). Rows V .. Vp − 1 of wte are padding: skipped on reading, written as zeros (gpt2.hpp).
//
// The file is untrusted and checked whole before the model is allocated: magic, version, every
// size in its range, heads dividing C, Vp ≥ V, and the file's size equal to the header plus the
// weights the sizes describe. The weights are then read tensor by tensor straight into the
// model's parameters (no second copy of the model), and must be finite.
//
// Reference: karpathy/llm.c, train_gpt2.c (gpt2_build_from_checkpoint) and train_gpt2.py
// (write_model).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/io/tensor_file.hpp"
#include "seqgen/models/gpt.hpp"
#include "seqgen/models/gpt2.hpp"

namespace seqgen {

inline constexpr std::int32_t kLlmcModelMagic = 20240326;
inline constexpr std::uint64_t kLlmcHeaderBytes = 256 * 4;

struct LlmcHeader {
  int version = 3;  // 3: float32, 5: bfloat16
  Index max_t = 0, V = 0, L = 0, NH = 0, C = 0, Vp = 0;

  TensorDtype dtype() const { return version == 5 ? TensorDtype::bf16 : TensorDtype::f32; }
  // Values stored after the header, computed in double first (an overflow-safe bound).
  template <typename T = std::uint64_t>
  T num_values() const {
    const T c = T(C), l = T(L);
    return T(Vp) * c + T(max_t) * c + l * (12 * c * c + 13 * c) + 2 * c;
  }
  GptConfig config() const {
    GptConfig g;
    g.vocab_size = V;
    g.context = max_t;
    g.channels = C;
    g.layers = L;
    g.heads = NH;
    g.dropout = 0;
    g.tie_weights = true;
    return g;
  }
};

namespace detail {

// The 16 tensors of a GPT-2 in llm.c's order, each visited as (file shape of one layer, the
// seqgen Param, whether the file holds it as a row-major matrix that seqgen keeps column-major).
// visit(rows_in_file, cols_in_file, Param&, transposed) is called L times per stacked kind, layer
// by layer, so the calls follow the file from start to end. wte is not included (it has padding).
template <typename Scalar, class Visit>
void for_each_llmc_tensor(Gpt<Scalar>& m, Visit&& visit) {
  const Index C = m.config.channels;
  visit(m.config.context, C, m.wpe.weight, false);
  auto each = [&](Index rows, Index cols, bool transposed, auto member) {
    for (auto& b : m.blocks) visit(rows, cols, member(b), transposed);
  };
  each(1, C, false, [](auto& b) -> Param<Scalar>& { return b.ln1.weight; });
  each(1, C, false, [](auto& b) -> Param<Scalar>& { return b.ln1.bias; });
  each(3 * C, C, true, [](auto& b) -> Param<Scalar>& { return b.attn.qkv.weight; });
  each(1, 3 * C, false, [](auto& b) -> Param<Scalar>& { return b.attn.qkv.bias; });
  each(C, C, true, [](auto& b) -> Param<Scalar>& { return b.attn.proj.weight; });
  each(1, C, false, [](auto& b) -> Param<Scalar>& { return b.attn.proj.bias; });
  each(1, C, false, [](auto& b) -> Param<Scalar>& { return b.ln2.weight; });
  each(1, C, false, [](auto& b) -> Param<Scalar>& { return b.ln2.bias; });
  each(4 * C, C, true, [](auto& b) -> Param<Scalar>& { return b.mlp.fc.weight; });
  each(1, 4 * C, false, [](auto& b) -> Param<Scalar>& { return b.mlp.fc.bias; });
  each(C, 4 * C, true, [](auto& b) -> Param<Scalar>& { return b.mlp.proj.weight; });
  each(1, C, false, [](auto& b) -> Param<Scalar>& { return b.mlp.proj.bias; });
  visit(1, C, m.ln_f.weight, false);
  visit(1, C, m.ln_f.bias, false);
}

}  // namespace detail

// Reads and checks the header of an llm.c model file against the file's size.
inline LlmcHeader read_llmc_header(TensorFileReader& f) {
  const std::string& name = f.name();
  check<FormatError>(f.size() >= kLlmcHeaderBytes, name, ": ", f.size(), " bytes, shorter than llm.c's ",
                     kLlmcHeaderBytes, "-byte header");
  char raw[kLlmcHeaderBytes];
  f.read(0, kLlmcHeaderBytes, raw);
  const auto at = [&](int i) { return std::int32_t(detail::load_le32(raw + 4 * i)); };
  check<FormatError>(at(0) == kLlmcModelMagic, name, ": magic ", at(0), ", expected ", kLlmcModelMagic,
                     " (an llm.c GPT-2 model file)");
  LlmcHeader h;
  h.version = at(1);
  check<FormatError>(h.version == 3 || h.version == 5, name, ": version ", h.version,
                     ", expected 3 (float32) or 5 (bfloat16)");
  const char* fields[] = {"maxT", "V", "L", "NH", "C", "Vp"};
  Index* values[] = {&h.max_t, &h.V, &h.L, &h.NH, &h.C, &h.Vp};
  for (int i = 0; i < 6; ++i) {
    const std::int32_t v = at(2 + i);
    check<FormatError>(v >= 1 && v <= (1 << 24), name, ": header ", fields[i], " = ", v, " is out of range [1, ",
                       1 << 24, "]");
    *values[i] = v;
  }
  check<FormatError>(h.C % h.NH == 0, name, ": NH = ", h.NH, " heads do not divide C = ", h.C);
  check<FormatError>(h.Vp >= h.V, name, ": padded vocabulary Vp = ", h.Vp, " is smaller than V = ", h.V);
  const double need = double(kLlmcHeaderBytes) + h.num_values<double>() * double(dtype_bytes(h.dtype()));
  check<FormatError>(need == double(f.size()), name, ": its header (maxT ", h.max_t, ", V ", h.V, ", Vp ", h.Vp,
                     ", L ", h.L, ", NH ", h.NH, ", C ", h.C, ", ", dtype_name(h.dtype()), ") describes ", need,
                     " bytes, the file has ", f.size());
  try {
    h.config().validate();
  } catch (const ConfigError& e) {
    throw FormatError(name + ": " + e.what());
  }
  return h;
}

// A Gpt holding the weights of an llm.c model file. IoError when it cannot be read, FormatError
// when it is not a valid one (the message names the file and what was expected).
template <typename Scalar = float>
Gpt<Scalar> load_llmc_gpt2(const std::string& path) {
  TensorFileReader f(path, "llm.c model '" + path + "'");
  const LlmcHeader h = read_llmc_header(f);
  Rng init_rng(0);
  Gpt<Scalar> m(h.config(), init_rng);
  const TensorDtype d = h.dtype();
  const std::uint64_t w = dtype_bytes(d);
  std::uint64_t at = kLlmcHeaderBytes;
  // wte: V rows of C, the columns of seqgen's (C, V) table; the Vp − V padded rows are skipped.
  f.read_values(at, d, std::uint64_t(h.V * h.C), m.wte.weight.value.data());
  at += std::uint64_t(h.Vp) * std::uint64_t(h.C) * w;
  detail::for_each_llmc_tensor(m, [&](Index rows, Index cols, Param<Scalar>& p, bool transposed) {
    if (transposed)
      f.read_rows_transposed(at, d, rows, cols, p.value);
    else
      f.read_values(at, d, std::uint64_t(rows * cols), p.value.data());
    at += std::uint64_t(rows * cols) * w;
  });
  m.for_each_param([&](Param<Scalar>& p) {
    check<FormatError>(p.value.allFinite(), f.name(), ": tensor '", p.name, "' holds a NaN or infinite weight");
  });
  return m;
}

// Writes a Gpt as an llm.c model file: version 3 (float32) or 5 (bfloat16), Vp = V rounded up to
// a multiple of 128. ConfigError for a model llm.c cannot hold (an untied head, a non-finite
// weight). Atomic: the file appears whole or not at all.
template <typename Scalar>
void save_llmc_gpt2(const Gpt<Scalar>& m, const std::string& path, TensorDtype dtype = TensorDtype::f32) {
  check<ConfigError>(dtype != TensorDtype::f16, "save_llmc_gpt2: llm.c stores float32 (version 3) or bfloat16 "
                                                "(version 5), not float16");
  check<ConfigError>(m.config.tie_weights, "save_llmc_gpt2: llm.c's GPT-2 ties its output head to wte; this "
                                           "model has a separate lm_head");
  m.for_each_param([&](const Param<Scalar>& p) {
    check<ConfigError>(p.value.allFinite(), "save_llmc_gpt2: parameter '", p.name, "' holds a NaN or infinite value");
  });
  const GptConfig& c = m.config;
  LlmcHeader h;
  h.version = dtype == TensorDtype::bf16 ? 5 : 3;
  h.max_t = c.context;
  h.V = c.vocab_size;
  h.L = c.layers;
  h.NH = c.heads;
  h.C = c.channels;
  h.Vp = padded_vocab_size(c.vocab_size);
  std::vector<char> header(kLlmcHeaderBytes, 0);
  const std::int64_t fields[] = {kLlmcModelMagic, h.version, h.max_t, h.V, h.L, h.NH, h.C, h.Vp};
  for (int i = 0; i < 8; ++i) detail::store_le(header.data() + 4 * i, std::uint64_t(fields[i]), 4);

  TensorFileWriter out(path);
  out.write(header.data(), header.size());
  out.write_values(m.wte.weight.value.data(), std::uint64_t(h.V * h.C), dtype);
  out.write_zeros(std::uint64_t(h.Vp - h.V) * std::uint64_t(h.C), dtype);
  // The visitor takes mutable Params; nothing is changed.
  detail::for_each_llmc_tensor(const_cast<Gpt<Scalar>&>(m), [&](Index rows, Index cols, Param<Scalar>& p,
                                                                bool transposed) {
    if (transposed)
      out.write_rows_transposed(p.value, dtype);
    else
      out.write_values(p.value.data(), std::uint64_t(rows * cols), dtype);
  });
  check<IoError>(out.written() == kLlmcHeaderBytes + h.num_values() * dtype_bytes(dtype),
                 "save_llmc_gpt2: wrote ", out.written(), " bytes, expected ",
                 kLlmcHeaderBytes + h.num_values() * dtype_bytes(dtype));
  out.commit();
}

}  // namespace seqgen
