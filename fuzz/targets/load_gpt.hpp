// Target `load_gpt`: what the CLIs do with a GPT checkpoint or exported model (PretrainedModel::load,
// as a program of its own loads one). load_model<Gpt<float>> and
// Tokenizer::from_bytes, then generate_samples; Trainer::load, then one step and an evaluation
// (when the stored batch x context <= 64). Checks "no crash" only.
// Input: a checkpoint file, its size field and CRC repaired first so that mutations reach the
// entries (and mutated by mutate_checkpoint half of the time).
#pragma once

#include "../checkpoint_format.hpp"
#include "../tiny_models.hpp"

namespace seqgen_fuzz {

inline int fuzz_load_gpt(const std::uint8_t* data, std::size_t size) {
  try {
    const CheckpointReader r =
        CheckpointReader::from_bytes(repair_checkpoint(std::string(reinterpret_cast<const char*>(data), size)));
    generate_and_resume<Gpt<float>>(r);
  } catch (const Error&) {
  }
  return 0;
}

inline std::vector<Seed> load_gpt_seeds() {
  return {{"gpt_tied", trained_checkpoint<Gpt<float>>(tiny_gpt(true, 1))},
          {"gpt_untied_2_layers", trained_checkpoint<Gpt<float>>(tiny_gpt(false, 2))},
          {"gpt_export_float16", exported_model<Gpt<float>>(tiny_gpt(true, 1), WeightPrecision::float16)}};
}

inline const bool registered_load_gpt =
    register_target({"load_gpt", fuzz_load_gpt, load_gpt_seeds, 32768, mutate_checkpoint});

}  // namespace seqgen_fuzz
