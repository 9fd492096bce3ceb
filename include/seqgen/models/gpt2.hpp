// The GPT-2 family's shapes (Radford et al., 2019) as GptConfigs, and the vocabulary padding of
// llm.c's checkpoints.
//
//   name    C      L    NH   parameters (tied head)
//   124M    768    12   12   124,439,808
//   355M    1024   24   16   354,823,168
//   774M    1280   36   20   774,030,080
//   1558M   1600   48   25   1,557,611,200      ("1.5B")
// Every one has V = 50257, context 1024, head size C / NH = 64, LayerNorm eps 1e-5
// (layers/layernorm.hpp), GELU in its tanh form (layers/gelu.hpp) and the output head tied to wte.
//
// Vocabulary padding. llm.c stores wte with Vp = V rounded up to a multiple of 128 rows (50304 for
// GPT-2), the extra rows zero, so that its kernels see a round size. A seqgen Gpt keeps exactly V
// rows: the readers skip the padded rows and the writers fill them with zeros, so a padded row can
// never be sampled nor enter the loss's softmax. Padding is a property of the file format, not of
// the model.
#pragma once

#include <string>
#include <string_view>

#include "seqgen/core/error.hpp"
#include "seqgen/models/gpt.hpp"

namespace seqgen {

inline constexpr Index kGpt2VocabSize = 50257;
inline constexpr Index kGpt2Context = 1024;
inline constexpr Index kGpt2HeadSize = 64;
inline constexpr Index kLlmcVocabMultiple = 128;

struct Gpt2Shape {
  const char* name;
  Index channels, layers, heads;
};
inline constexpr Gpt2Shape kGpt2Shapes[] = {
    {"124M", 768, 12, 12}, {"355M", 1024, 24, 16}, {"774M", 1280, 36, 20}, {"1558M", 1600, 48, 25}};

// The GptConfig of a GPT-2 size: "124M", "355M", "774M", "1558M" (or "1.5B"); also the names of
// the Hugging Face repositories ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"). ConfigError
// listing the names otherwise.
inline GptConfig gpt2_config(std::string_view size) {
  const std::string_view aliases[][2] = {{"gpt2", "124M"},     {"gpt2-medium", "355M"}, {"gpt2-large", "774M"},
                                         {"gpt2-xl", "1558M"}, {"1.5B", "1558M"},       {"117M", "124M"},
                                         {"345M", "355M"}};
  for (const auto& a : aliases)
    if (size == a[0]) size = a[1];
  for (const Gpt2Shape& s : kGpt2Shapes) {
    if (size != s.name) continue;
    GptConfig c;
    c.vocab_size = kGpt2VocabSize;
    c.context = kGpt2Context;
    c.channels = s.channels;
    c.layers = s.layers;
    c.heads = s.heads;
    c.dropout = 0;
    c.tie_weights = true;
    return c;
  }
  throw ConfigError("gpt2_config: unknown GPT-2 size '" + std::string(size) +
                    "', expected 124M, 355M, 774M, 1558M (1.5B), gpt2, gpt2-medium, gpt2-large or gpt2-xl");
}

// V rounded up to a multiple of `multiple` (llm.c's Vp: 50257 -> 50304).
inline Index padded_vocab_size(Index V, Index multiple = kLlmcVocabMultiple) {
  check<ConfigError>(V > 0 && multiple > 0, "padded_vocab_size: V (", V, ") and multiple (", multiple,
                     ") must be positive");
  return (V + multiple - 1) / multiple * multiple;
}

// The heads of a GPT-2 of width C, for a file that does not say (model.safetensors keeps no
// config): the family's own count when C is one of its widths, else C / 64 (GPT-2's head size)
// when 64 divides C; 0 when neither applies (the caller must be told the heads).
inline Index gpt2_heads_for_width(Index C) {
  for (const Gpt2Shape& s : kGpt2Shapes)
    if (s.channels == C) return s.heads;
  return C > 0 && C % kGpt2HeadSize == 0 ? C / kGpt2HeadSize : 0;
}

}  // namespace seqgen
