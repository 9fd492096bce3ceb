// Target `gpt2_llmc`: llm.c's GPT-2 model file (io/llmc_gpt2.hpp), as generate --model and
// train --init read it. load_llmc_gpt2 from a file holding the input; a model it accepts runs a
// forward, and written again (version 3) it reads back bit-identical. Hostile headers (magic,
// version, sizes out of range or disagreeing with the file's size) give a seqgen error, never a
// crash or an allocation beyond what the file's size allows.
// Input: the file.
#pragma once

#include "../harness.hpp"

namespace seqgen_fuzz {

inline Gpt<float> tiny_gpt2(bool tied, std::uint64_t seed) {
  GptConfig c;
  c.vocab_size = 40;  // padded to 128 in llm.c's file
  c.context = 8;
  c.channels = 8;
  c.layers = 1;
  c.heads = 2;
  c.tie_weights = tied;
  Rng rng(seed);
  Gpt<float> m(c, rng);
  m.for_each_param([&](Param<float>& p) { normal_init(p.value, rng, 0.5); });
  return m;
}

inline bool same_weights(const Gpt<float>& a, const Gpt<float>& b) {
  bool same = a.num_tensors() == b.num_tensors();
  a.for_each_param([&](const Param<float>& p) {
    const Param<float>* q = b.find_param(p.name);
    same = same && q && q->value.rows() == p.value.rows() && q->value.cols() == p.value.cols() &&
           std::equal(p.value.data(), p.value.data() + p.size(), q->value.data(),
                      [](float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; });
  });
  return same;
}

// What every accepted GPT-2 must do: run a forward (finite weights may still overflow to an
// infinite logit, which is arithmetic, not a finding), and keep its weights through a write and a
// read in `format`.
inline void check_gpt2_model(Gpt<float>& m, const std::string& scratch, Gpt2Format format) {
  Gpt<float>::State state;
  Gpt<float>::Activations act;
  Mat<float> logits;
  const std::vector<Token> ids = {0};
  m.logits(ids, 1, 1, state, act, logits);
  SEQGEN_FUZZ_EXPECT(logits.rows() == m.config.vocab_size && logits.cols() == 1, "logits of the wrong shape");
  save_gpt2_file(m, scratch, format);
  const Gpt<float> back = load_gpt2_file(scratch, m.config.heads);
  std::remove(scratch.c_str());
  SEQGEN_FUZZ_EXPECT(same_weights(m, back), "written and read again, the weights changed");
}

inline int fuzz_gpt2_llmc(const std::uint8_t* data, std::size_t size) {
  const TempFile file("gpt2_llmc", std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    Gpt<float> m = load_llmc_gpt2(file.path());
    check_gpt2_model(m, file.path() + ".out", Gpt2Format::llmc);
  } catch (const Error&) {
  }
  return 0;
}

inline std::vector<Seed> gpt2_llmc_seeds() {
  const TempFile scratch("gpt2_llmc_seed", "");
  std::vector<Seed> seeds;
  for (const auto& [name, dtype] : {std::pair<const char*, TensorDtype>{"float32_v3", TensorDtype::f32},
                                    std::pair<const char*, TensorDtype>{"bfloat16_v5", TensorDtype::bf16}}) {
    save_llmc_gpt2(tiny_gpt2(true, 1), scratch.path(), dtype);
    seeds.push_back({name, scratch.contents()});
  }
  return seeds;
}

inline const bool registered_gpt2_llmc = register_target({"gpt2_llmc", fuzz_gpt2_llmc, gpt2_llmc_seeds, 16384});

}  // namespace seqgen_fuzz
