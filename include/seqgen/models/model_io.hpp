// Models in checkpoints: the model kind, the config, the weights and the tokenizer a model was
// trained with, read and written the same way by `train`, `generate`, the Trainer and the fuzzer.
//
// A checkpoint is untrusted: every config field is read with its valid range, and an error names
// the file and the field ("checkpoint 'm.ckpt': config.channels = 0 is out of range [1, 16777216]");
// the weights must fill the shapes the config gives and be finite; the tokenizer must have as many
// symbols as the model's vocabulary.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "seqgen/data/tokenizer.hpp"
#include "seqgen/io/checkpoint.hpp"
#include "seqgen/models/gpt.hpp"
#include "seqgen/models/recurrent_lm.hpp"

namespace seqgen {

// The range of every size in a config (GptConfig::validate, RecurrentConfig::validate).
inline constexpr std::int64_t kMaxConfigDim = std::int64_t(1) << 24;

namespace detail {

// Runs f, a check of what checkpoint r holds (a config's rules between fields, a blob's parser),
// and rethrows a `Caught` it throws as a FormatError that names the checkpoint.
template <class Caught = ConfigError, class F>
decltype(auto) naming_checkpoint(const CheckpointReader& r, F&& f) {
  try {
    return f();
  } catch (const Caught& e) {
    throw FormatError(r.source() + ": " + e.what());
  }
}

}  // namespace detail

inline void write_config(CheckpointWriter& w, const GptConfig& c) {
  w.put_int("config.vocab_size", c.vocab_size);
  w.put_int("config.context", c.context);
  w.put_int("config.channels", c.channels);
  w.put_int("config.layers", c.layers);
  w.put_int("config.heads", c.heads);
  w.put_double("config.dropout", c.dropout);
  w.put_int("config.tie_weights", c.tie_weights ? 1 : 0);
}
inline void read_config(const CheckpointReader& r, GptConfig& c) {
  c.vocab_size = r.get_int("config.vocab_size", 1, kMaxConfigDim);
  c.context = r.get_int("config.context", 1, kMaxConfigDim);
  c.channels = r.get_int("config.channels", 1, kMaxConfigDim);
  c.layers = r.get_int("config.layers", 1, kMaxConfigDim);
  c.heads = r.get_int("config.heads", 1, kMaxConfigDim);
  c.dropout = r.get_double("config.dropout", 0, 0.999);
  c.tie_weights = r.get_int("config.tie_weights", 0, 1) != 0;
  detail::naming_checkpoint(r, [&] { c.validate(); });
}
inline void write_config(CheckpointWriter& w, const RecurrentConfig& c) {
  w.put_int("config.vocab_size", c.vocab_size);
  w.put_int("config.embedding", c.embedding);
  w.put_int("config.hidden", c.hidden);
  w.put_int("config.layers", c.layers);
}
inline void read_config(const CheckpointReader& r, RecurrentConfig& c) {
  c.vocab_size = r.get_int("config.vocab_size", 1, kMaxConfigDim);
  c.embedding = r.get_int("config.embedding", 1, kMaxConfigDim);
  c.hidden = r.get_int("config.hidden", 1, kMaxConfigDim);
  c.layers = r.get_int("config.layers", 1, kMaxConfigDim);
  detail::naming_checkpoint(r, [&] { c.validate(); });
}

// The model kind stored in a checkpoint: "gpt", "rnn", "lstm" or "gru" (FormatError otherwise).
inline std::string checkpoint_model_kind(const CheckpointReader& r) {
  const std::string kind = r.get_string("model.kind");
  if (kind != "gpt" && kind != "rnn" && kind != "lstm" && kind != "gru")
    throw FormatError(r.source() + " holds an unknown model kind '" + kind + "'");
  return kind;
}

// A model type carried as a value, for visit_model_kind.
template <typename Model>
struct ModelType {
  using type = Model;
};

// The one dispatch from a model kind to a model type, used by the programs and the fuzzer: calls
// visit(ModelType<Model>{}) for "gpt", "rnn", "lstm" or "gru" and returns what it returns;
// FormatError for any other kind. A new model family adds one line here.
template <typename Scalar = float, class Visit>
decltype(auto) visit_model_kind(const std::string& kind, Visit&& visit) {
  if (kind == "gpt") return visit(ModelType<Gpt<Scalar>>{});
  if (kind == "rnn") return visit(ModelType<RnnLm<Scalar>>{});
  if (kind == "lstm") return visit(ModelType<LstmLm<Scalar>>{});
  if (kind == "gru") return visit(ModelType<GruLm<Scalar>>{});
  throw FormatError("unknown model kind '" + kind + "' (expected gpt, rnn, lstm or gru)");
}

// The config stored in a checkpoint for Model, validated, before any weight is allocated.
template <typename Model>
typename Model::Config load_config(const CheckpointReader& r) {
  const std::string kind = checkpoint_model_kind(r);
  check<FormatError>(kind == Model::kind(), r.source(), " holds a '", kind, "' model, expected '", Model::kind(),
                     "'");
  typename Model::Config config;
  if constexpr (std::is_same_v<typename Model::Config, RecurrentConfig>) config.cell = Model::kCell;
  read_config(r, config);
  // Every weight is stored in the file, so a config that claims more than the file can hold is
  // corrupt: refuse it before allocating the model.
  check<FormatError>(config.template num_params<double>() * sizeof(float) <= double(r.size_bytes()), r.source(),
                     ": its config describes ", config.template num_params<double>(), " parameters, more than its ",
                     r.size_bytes(), " bytes can hold");
  return config;
}

// Builds a model from a checkpoint's kind, config and weights. Every weight must be finite: a NaN
// or an infinity in a file that passed its CRC means it was damaged before it was written.
template <typename Model>
Model load_model(const CheckpointReader& r) {
  const auto config = load_config<Model>(r);
  Rng init_rng(0);
  Model model(config, init_rng);
  read_params(r, model);
  model.for_each_param([&](auto& p) {
    check<FormatError>(p.value.allFinite(), r.source(), ": tensor 'param/", p.name,
                       "' holds a NaN or infinite weight (the checkpoint is damaged)");
  });
  return model;
}

// The state a model carries between batches (Model::State), under state/<layer>.h and .c; a GPT
// carries none and writes nothing. read_state fills a state already shaped by zero_state(B).
inline void write_state(CheckpointWriter&, const NoState&) {}
inline void read_state(const CheckpointReader&, NoState&) {}

template <typename LayerState>
void write_state(CheckpointWriter& w, const std::vector<LayerState>& state) {
  for (std::size_t l = 0; l < state.size(); ++l) {
    w.put_tensor("state/" + std::to_string(l) + ".h", state[l].h);
    if constexpr (detail::HasCellState<LayerState>::value) w.put_tensor("state/" + std::to_string(l) + ".c", state[l].c);
  }
}
template <typename LayerState>
void read_state(const CheckpointReader& r, std::vector<LayerState>& state) {
  for (std::size_t l = 0; l < state.size(); ++l) {
    auto& s = state[l];
    r.get_tensor("state/" + std::to_string(l) + ".h", s.h, s.h.rows(), s.h.cols());
    if constexpr (detail::HasCellState<LayerState>::value)
      r.get_tensor("state/" + std::to_string(l) + ".c", s.c, s.c.rows(), s.c.cols());
  }
}

// The tokenizer stored with a model, checked against the model's vocabulary.
inline Tokenizer load_tokenizer(const CheckpointReader& r, Index model_vocab_size) {
  const std::string blob = r.get_bytes("tokenizer");  // a missing entry names the file itself
  Tokenizer tok = detail::naming_checkpoint<FormatError>(r, [&] { return Tokenizer::from_bytes(blob); });
  check<FormatError>(tok.vocab_size() == model_vocab_size, r.source(), ": its tokenizer (",
                     tok.kind() == Tokenizer::Kind::bytes ? "bytes" : "characters", ") has ", tok.vocab_size(),
                     " symbols but its model's vocabulary has ", model_vocab_size, " (the checkpoint is damaged)");
  return tok;
}

}  // namespace seqgen
