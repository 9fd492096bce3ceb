// Target `load_recurrent`: the same as load_gpt for the RNN, LSTM and GRU models, the type chosen
// by the file's model.kind. Checks "no crash" only.
// Input: a checkpoint file, its size field and CRC repaired first (and mutated by
// mutate_checkpoint half of the time).
#pragma once

#include "../checkpoint_format.hpp"
#include "../tiny_models.hpp"

namespace seqgen_fuzz {

inline int fuzz_load_recurrent(const std::uint8_t* data, std::size_t size) {
  try {
    const CheckpointReader r =
        CheckpointReader::from_bytes(repair_checkpoint(std::string(reinterpret_cast<const char*>(data), size)));
    // The library's dispatch (models/model_io.hpp); a GPT kind is load_gpt's, but runs here too.
    visit_model_kind(checkpoint_model_kind(r), [&](auto model) { generate_and_resume<typename decltype(model)::type>(r); });
  } catch (const Error&) {
  }
  return 0;
}

inline std::vector<Seed> load_recurrent_seeds() {
  return {{"lstm", trained_checkpoint<LstmLm<float>>(tiny_recurrent(CellKind::lstm, 1))},
          {"gru", trained_checkpoint<GruLm<float>>(tiny_recurrent(CellKind::gru, 1))},
          {"rnn_2_layers", trained_checkpoint<RnnLm<float>>(tiny_recurrent(CellKind::rnn, 2))},
          {"lstm_export", exported_model<LstmLm<float>>(tiny_recurrent(CellKind::lstm, 1), WeightPrecision::float32)}};
}

inline const bool registered_load_recurrent =
    register_target({"load_recurrent", fuzz_load_recurrent, load_recurrent_seeds, 16384, mutate_checkpoint});

}  // namespace seqgen_fuzz
