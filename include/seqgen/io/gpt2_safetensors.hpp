// GPT-2 in Hugging Face's model.safetensors, read into and written from a seqgen Gpt.
//
//   HF name (optionally prefixed "transformer.")   file shape      seqgen parameter
//   wte.weight                                     (V, C)          wte.weight            (C, V)
//   wpe.weight                                     (context, C)    wpe.weight            (C, context)
//   h.{l}.ln_1.weight, .bias                       (C)             blocks.{l}.ln1.weight, .bias
//   h.{l}.attn.c_attn.weight                       (C, 3C)         blocks.{l}.attn.qkv.weight (3C, C)
//   h.{l}.attn.c_attn.bias                         (3C)            blocks.{l}.attn.qkv.bias
//   h.{l}.attn.c_proj.weight, .bias                (C, C), (C)     blocks.{l}.attn.proj.weight, .bias
//   h.{l}.ln_2.weight, .bias                       (C)             blocks.{l}.ln2.weight, .bias
//   h.{l}.mlp.c_fc.weight, .bias                   (C, 4C), (4C)   blocks.{l}.mlp.fc.weight (4C, C), .bias
//   h.{l}.mlp.c_proj.weight, .bias                 (4C, C), (C)    blocks.{l}.mlp.proj.weight (C, 4C), .bias
//   ln_f.weight, .bias                             (C)             ln_f.weight, .bias
//   lm_head.weight (optional, never prefixed)      (V, C)          lm_head.weight (C, V) when untied
// GPT-2's matrices are Conv1D weights, stored (in, out) row-major: the same memory as seqgen's
// Linear (out, in) column-major, so every tensor is read and written as it lies, no transpose.
// The causal-mask buffers h.{l}.attn.bias and h.{l}.attn.masked_bias are skipped. An lm_head.weight
// with the same bytes as wte is the tied head; one that differs makes an untied model.
//
// The file keeps no config: V, C and the context come from the shapes, L from the h.{l} names,
// and the heads from the caller, else the metadata entry "n_head" (seqgen writes it), else the
// GPT-2 family's count for that width (models/gpt2.hpp).
//
// Everything is checked before the model is allocated (io/safetensors.hpp for the container):
// each expected tensor present once with its exact shape and a float dtype, no unknown tensor.
// Allocation is then bounded by the file's size. F16 and BF16 are widened to float.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/io/safetensors.hpp"
#include "seqgen/models/gpt.hpp"
#include "seqgen/models/gpt2.hpp"

namespace seqgen {

namespace detail {

// Every parameter of a GPT-2 of config c with its Hugging Face name and file shape, in
// Gpt::for_each_param's order: visit(hf_name, shape, Param*), the Param of model m, or nullptr
// when m is nullptr (the names and shapes alone, before a model exists).
template <typename Scalar, class Visit>
void for_each_hf_gpt2_tensor(const GptConfig& c, Gpt<Scalar>* m, Visit&& visit) {
  const std::int64_t C = c.channels, V = c.vocab_size, T = c.context;
  using P = Param<Scalar>*;
  visit("wte.weight", std::vector<std::int64_t>{V, C}, m ? &m->wte.weight : P());
  visit("wpe.weight", std::vector<std::int64_t>{T, C}, m ? &m->wpe.weight : P());
  for (Index l = 0; l < c.layers; ++l) {
    auto* b = m ? &m->blocks[std::size_t(l)] : nullptr;
    const std::string h = "h." + std::to_string(l) + ".";
    visit(h + "ln_1.weight", std::vector<std::int64_t>{C}, b ? &b->ln1.weight : P());
    visit(h + "ln_1.bias", std::vector<std::int64_t>{C}, b ? &b->ln1.bias : P());
    visit(h + "attn.c_attn.weight", std::vector<std::int64_t>{C, 3 * C}, b ? &b->attn.qkv.weight : P());
    visit(h + "attn.c_attn.bias", std::vector<std::int64_t>{3 * C}, b ? &b->attn.qkv.bias : P());
    visit(h + "attn.c_proj.weight", std::vector<std::int64_t>{C, C}, b ? &b->attn.proj.weight : P());
    visit(h + "attn.c_proj.bias", std::vector<std::int64_t>{C}, b ? &b->attn.proj.bias : P());
    visit(h + "ln_2.weight", std::vector<std::int64_t>{C}, b ? &b->ln2.weight : P());
    visit(h + "ln_2.bias", std::vector<std::int64_t>{C}, b ? &b->ln2.bias : P());
    visit(h + "mlp.c_fc.weight", std::vector<std::int64_t>{C, 4 * C}, b ? &b->mlp.fc.weight : P());
    visit(h + "mlp.c_fc.bias", std::vector<std::int64_t>{4 * C}, b ? &b->mlp.fc.bias : P());
    visit(h + "mlp.c_proj.weight", std::vector<std::int64_t>{4 * C, C}, b ? &b->mlp.proj.weight : P());
    visit(h + "mlp.c_proj.bias", std::vector<std::int64_t>{C}, b ? &b->mlp.proj.bias : P());
  }
  visit("ln_f.weight", std::vector<std::int64_t>{C}, m ? &m->ln_f.weight : P());
  visit("ln_f.bias", std::vector<std::int64_t>{C}, m ? &m->ln_f.bias : P());
  if (!c.tie_weights) visit("lm_head.weight", std::vector<std::int64_t>{V, C}, m ? &m->lm_head : P());
}

inline std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

// Whether two tensors of a file hold the same bytes (read by chunks).
inline bool same_bytes(TensorFileReader& f, const SafetensorsIndex& index, const SafetensorsTensor& a,
                       const SafetensorsTensor& b) {
  if (a.dtype != b.dtype || a.end - a.begin != b.end - b.begin) return false;
  const std::uint64_t n = a.end - a.begin, chunk = std::uint64_t(1) << 20;
  std::vector<char> x(std::min(n, chunk)), y(std::min(n, chunk));
  for (std::uint64_t done = 0; done < n; done += chunk) {
    const std::uint64_t m = std::min(chunk, n - done);
    f.read(index.data_start + a.begin + done, m, x.data());
    f.read(index.data_start + b.begin + done, m, y.data());
    if (std::memcmp(x.data(), y.data(), m) != 0) return false;
  }
  return true;
}

}  // namespace detail

// A Gpt holding the weights of a GPT-2 model.safetensors. `heads` 0: from the metadata or the
// width (see the header comment). IoError when the file cannot be read, FormatError when it is not
// a GPT-2 (the message names the file, the tensor and what was expected).
template <typename Scalar = float>
Gpt<Scalar> load_safetensors_gpt2(const std::string& path, Index heads = 0) {
  TensorFileReader f(path, "safetensors '" + path + "'");
  const SafetensorsIndex index = read_safetensors_index(f);
  const std::string& name = f.name();
  const std::string prefix = index.find("transformer.wte.weight") ? "transformer." : "";
  const auto find = [&](const std::string& hf) -> const SafetensorsTensor* {
    return hf == "lm_head.weight" ? index.find(hf) : index.find(prefix + hf);
  };
  const SafetensorsTensor* wte = find("wte.weight");
  const SafetensorsTensor* wpe = find("wpe.weight");
  check<FormatError>(wte && wpe, name, ": no ", prefix, wte ? "wpe.weight" : "wte.weight",
                     " tensor: not a GPT-2 model (expected Hugging Face's GPT2Model names)");
  check<FormatError>(wte->shape.size() == 2 && wpe->shape.size() == 2 && wte->shape[1] == wpe->shape[1], name,
                     ": wte.weight ", detail::shape_text(wte->shape), " and wpe.weight ",
                     detail::shape_text(wpe->shape), " must be (V, C) and (context, C)");
  GptConfig c;
  c.vocab_size = wte->shape[0];
  c.channels = wte->shape[1];
  c.context = wpe->shape[0];
  c.layers = 0;
  while (find("h." + std::to_string(c.layers) + ".ln_1.weight")) ++c.layers;
  check<FormatError>(c.layers > 0, name, ": no h.0.ln_1.weight: a GPT-2 has at least one block");
  if (heads == 0 && index.metadata.count("n_head")) {
    const std::string& s = index.metadata.at("n_head");
    check<FormatError>(!s.empty() && s.size() <= 8 && s.find_first_not_of("0123456789") == std::string::npos, name,
                       ": metadata n_head is '", s, "', expected a positive integer");
    heads = std::stoll(s);
  }
  if (heads == 0) heads = gpt2_heads_for_width(c.channels);
  check<FormatError>(heads > 0, name, ": width C = ", c.channels,
                     " is not a GPT-2 width and 64 does not divide it: give the number of heads");
  c.heads = heads;
  c.dropout = 0;
  const SafetensorsTensor* head = find("lm_head.weight");
  c.tie_weights = head == nullptr;
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw FormatError(name + ": " + e.what());
  }

  // Every tensor of the model present with its shape and a float dtype; nothing unexpected.
  // Checked on the names and shapes alone, before the model is allocated.
  std::set<std::string> expected;
  {
    GptConfig tied = c;
    tied.tie_weights = true;  // lm_head is checked below
    detail::for_each_hf_gpt2_tensor<Scalar>(tied, nullptr, [&](const std::string& hf,
                                                               const std::vector<std::int64_t>& shape, Param<Scalar>*) {
      const SafetensorsTensor* t = find(hf);
      check<FormatError>(t != nullptr, name, ": tensor '", prefix, hf, "' is missing");
      TensorDtype d = TensorDtype::f32;
      check<FormatError>(safetensors_float_dtype(t->dtype, d), name, ": tensor '", t->name, "' has dtype ", t->dtype,
                         ", expected F32, F16 or BF16");
      check<FormatError>(t->shape == shape, name, ": tensor '", t->name, "' has shape ", detail::shape_text(t->shape),
                         ", expected ", detail::shape_text(shape));
      expected.insert(t->name);
    });
  }
  if (head) {
    check<FormatError>(head->shape == wte->shape, name, ": lm_head.weight has shape ", detail::shape_text(head->shape),
                       ", expected wte's ", detail::shape_text(wte->shape));
    TensorDtype d = TensorDtype::f32;
    check<FormatError>(safetensors_float_dtype(head->dtype, d), name, ": tensor 'lm_head.weight' has dtype ",
                       head->dtype, ", expected F32, F16 or BF16");
    expected.insert(head->name);
  }
  for (const SafetensorsTensor& t : index.tensors) {
    if (expected.count(t.name)) continue;
    const std::string suffix = t.name.size() > prefix.size() ? t.name.substr(prefix.size()) : "";
    const auto ends_with = [&](const std::string& s) {
      return suffix.size() >= s.size() && suffix.compare(suffix.size() - s.size(), s.size(), s) == 0;
    };
    const bool mask = t.name.compare(0, prefix.size(), prefix) == 0 && suffix.compare(0, 2, "h.") == 0 &&
                      (ends_with(".attn.bias") || ends_with(".attn.masked_bias"));
    check<FormatError>(mask, name, ": unexpected tensor '", t.name, "': not part of a GPT-2 of ", c.layers,
                       " layers");
  }
  if (head && detail::same_bytes(f, index, *head, *wte)) c.tie_weights = true;

  Rng init_rng(0);
  Gpt<Scalar> m(c, init_rng);
  detail::for_each_hf_gpt2_tensor(c, &m, [&](const std::string& hf, const std::vector<std::int64_t>&, Param<Scalar>* p) {
    read_safetensors_values(f, index, *find(hf), p->value.data());
  });
  m.for_each_param([&](Param<Scalar>& p) {
    check<FormatError>(p.value.allFinite(), name, ": tensor for '", p.name, "' holds a NaN or infinite weight");
  });
  return m;
}

// Writes a Gpt as a GPT-2 model.safetensors (unprefixed names, as the "gpt2" repository has; an
// untied head as lm_head.weight), float32 or, converted, F16/BF16. Metadata: format "pt" (which
// transformers requires) and n_head. ConfigError for a non-finite weight. Atomic.
template <typename Scalar>
void save_safetensors_gpt2(const Gpt<Scalar>& m, const std::string& path, TensorDtype dtype = TensorDtype::f32) {
  m.for_each_param([&](const Param<Scalar>& p) {
    check<ConfigError>(p.value.allFinite(), "save_safetensors_gpt2: parameter '", p.name,
                       "' holds a NaN or infinite value");
  });
  auto& model = const_cast<Gpt<Scalar>&>(m);  // the visitor takes mutable Params; nothing is changed
  SafetensorsWriter w(path);
  w.set_metadata("format", "pt");
  w.set_metadata("n_head", std::to_string(m.config.heads));
  detail::for_each_hf_gpt2_tensor(m.config, &model, [&](const std::string& hf, const std::vector<std::int64_t>& shape,
                                                        Param<Scalar>*) { w.add(hf, dtype, shape); });
  detail::for_each_hf_gpt2_tensor(m.config, &model, [&](const std::string&, const std::vector<std::int64_t>&,
                                                        Param<Scalar>* p) {
    w.write(p->value.data(), std::uint64_t(p->size()));
  });
  w.commit();
}

}  // namespace seqgen
