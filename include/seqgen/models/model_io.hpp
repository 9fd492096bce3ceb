// Models in checkpoints: the model kind, the config, the weights and the tokenizer a model was
// trained with, read and written the same way by `train`, `generate`, the Trainer and the fuzzer.
//
// A checkpoint is untrusted: every config field is read with its valid range, and an error names
// the file and the field ("checkpoint 'm.ckpt': config.channels = 0 is out of range [1, 16777216]");
// the weights must fill the shapes the config gives and be finite; the tokenizer must have as many
// symbols as the model's vocabulary.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_set>
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

// ---- Weights stored as float16 (an exported model, generate/pretrained.hpp) -------------------
//
// An exported file may keep its weights in IEEE half precision, to halve its size: each parameter
// is then a bytes entry "param16/<name>" holding u64 rows | u64 cols | rows·cols u16 half floats,
// little-endian, column-major, and "export.weights" says "float16". The conversion is Eigen's
// (Eigen::half, round to nearest even).

inline constexpr const char* kHalfPrefix = "param16/";

// Whether checkpoint r keeps its weights as float16.
inline bool has_half_weights(const CheckpointReader& r) {
  if (!r.has("export.weights")) return false;  // a training checkpoint: float32
  const std::string weights = r.get_string("export.weights");
  check<FormatError>(weights == "float32" || weights == "float16", r.source(), ": export.weights is '", weights,
                     "', expected float32 or float16");
  return weights == "float16";
}

// Stores every float parameter of a module as float16 under kHalfPrefix. ConfigError when a weight
// lies beyond float16's range (|w| > 65504), which the format cannot hold.
template <class Module>
void write_params_half(CheckpointWriter& w, Module& module) {
  module.for_each_param([&](auto& p) {
    const Index n = p.value.size();
    std::string blob(16 + 2 * std::size_t(n), '\0');
    detail::store_le(&blob[0], std::uint64_t(p.value.rows()), 8);
    detail::store_le(&blob[8], std::uint64_t(p.value.cols()), 8);
    for (Index i = 0; i < n; ++i) {
      const float x = float(p.value.data()[i]);
      check<ConfigError>(std::abs(x) <= 65504.0f, "write_params_half: parameter '", p.name, "' holds ", x,
                         ", beyond float16's range of 65504: export it as float32");
      detail::store_le(&blob[16 + 2 * std::size_t(i)], Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(x)), 2);
    }
    w.put_bytes(kHalfPrefix + p.name, blob);
  });
}

// Loads every parameter of a module from float16 entries, with read_params' rules: every entry is
// checked (present, shape, size) before any parameter is overwritten, and an entry the module
// lacks is an error.
template <class Module>
void read_params_half(const CheckpointReader& r, Module& module) {
  const std::string prefix = kHalfPrefix;
  std::unordered_set<std::string> expected;
  module.for_each_param([&](auto& p) {
    const std::string key = prefix + p.name;
    // A bytes entry has been checked against the file; its payload is read in place below.
    const std::string blob = r.get_bytes(key);
    check<FormatError>(blob.size() >= 16, r.source(), ": float16 tensor '", key, "' has ", blob.size(),
                       " bytes, fewer than its 16-byte shape");
    const std::uint64_t rows = detail::load_le64(blob.data()), cols = detail::load_le64(blob.data() + 8);
    check<FormatError>(rows == std::uint64_t(p.value.rows()) && cols == std::uint64_t(p.value.cols()), r.source(),
                       ": float16 tensor '", key, "' has shape (", rows, ", ", cols, "), expected (", p.value.rows(),
                       ", ", p.value.cols(), ")");
    check<FormatError>(blob.size() == 16 + 2 * std::size_t(p.value.size()), r.source(), ": float16 tensor '", key,
                       "' holds ", blob.size() - 16, " bytes of data, its shape needs ", 2 * p.value.size());
    expected.insert(key);
  });
  for (const std::string& key : r.keys())
    check<FormatError>(key.compare(0, prefix.size(), prefix) != 0 || expected.count(key) != 0, r.source(),
                       ": unexpected tensor '", key, "': the model has no parameter '", key.substr(prefix.size()), "'");
  module.for_each_param([&](auto& p) {
    using Scalar = typename std::decay_t<decltype(p.value)>::Scalar;
    const std::string blob = r.get_bytes(prefix + p.name);
    for (Index i = 0; i < p.value.size(); ++i) {
      const auto* b = reinterpret_cast<const unsigned char*>(blob.data()) + 16 + 2 * i;
      const auto bits = std::uint16_t(b[0] | b[1] << 8);
      p.value.data()[i] = Scalar(float(Eigen::numext::bit_cast<Eigen::half>(bits)));
    }
  });
}

// ---------------------------------------------------------------------------------------------

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
  const double bytes_per_weight = has_half_weights(r) ? 2 : sizeof(float);
  check<FormatError>(config.template num_params<double>() * bytes_per_weight <= double(r.size_bytes()), r.source(),
                     ": its config describes ", config.template num_params<double>(), " parameters, more than its ",
                     r.size_bytes(), " bytes can hold");
  return config;
}

// Builds a model from a checkpoint's kind, config and weights (float32, or float16 in an exported
// file). Every weight must be finite: a NaN
// or an infinity in a file that passed its CRC means it was damaged before it was written.
template <typename Model>
Model load_model(const CheckpointReader& r) {
  const auto config = load_config<Model>(r);
  Rng init_rng(0);
  Model model(config, init_rng);
  if (has_half_weights(r))
    read_params_half(r, model);
  else
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
                     tok.kind_name(), ") has ", tok.vocab_size(),
                     " symbols but its model's vocabulary has ", model_vocab_size, " (the checkpoint is damaged)");
  return tok;
}

}  // namespace seqgen
