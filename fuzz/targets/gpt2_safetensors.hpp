// Target `gpt2_safetensors`: Hugging Face's model.safetensors for GPT-2 (io/safetensors.hpp,
// io/gpt2_safetensors.hpp), as generate --model and train --init read it. load_safetensors_gpt2
// from a file holding the input; a model it accepts runs a forward, and written again it reads
// back bit-identical. Hostile headers (a length beyond the file, JSON that does not parse, nests
// deep or holds a million values, unknown or wrong dtypes, absurd shapes, offsets out of range or
// overlapping, missing or unexpected tensors) give a seqgen error, never a crash or a huge
// allocation.
// Input: the file.
#pragma once

#include "../harness.hpp"
#include "gpt2_llmc.hpp"

namespace seqgen_fuzz {

inline int fuzz_gpt2_safetensors(const std::uint8_t* data, std::size_t size) {
  const TempFile file("gpt2_safetensors", std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    Gpt<float> m = load_safetensors_gpt2(file.path());
    check_gpt2_model(m, file.path() + ".out", Gpt2Format::safetensors);
  } catch (const Error&) {
  }
  return 0;
}

inline std::vector<Seed> gpt2_safetensors_seeds() {
  const TempFile scratch("gpt2_safetensors_seed", "");
  std::vector<Seed> seeds;
  save_safetensors_gpt2(tiny_gpt2(true, 1), scratch.path(), TensorDtype::f32);
  seeds.push_back({"tied_f32", scratch.contents()});
  save_safetensors_gpt2(tiny_gpt2(false, 2), scratch.path(), TensorDtype::bf16);
  seeds.push_back({"untied_bf16", scratch.contents()});
  save_safetensors_gpt2(tiny_gpt2(true, 3), scratch.path(), TensorDtype::f16);
  seeds.push_back({"tied_f16", scratch.contents()});
  return seeds;
}

inline const bool registered_gpt2_safetensors =
    register_target({"gpt2_safetensors", fuzz_gpt2_safetensors, gpt2_safetensors_seeds, 16384});

}  // namespace seqgen_fuzz
