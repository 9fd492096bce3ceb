// A trained model inside your own program: export it once, load it with one call, generate text.
//
//   seqgen::export_model("run.ckpt", "model.bin");                 // weights, config, tokenizer
//   const auto model = seqgen::PretrainedModel::load("model.bin");  // or the training checkpoint
//   std::string text = model.generate("Once upon", 200, sampling, rng);
//
// An exported model is a checkpoint container (io/checkpoint.hpp) that keeps only what inference
// reads: `model.kind`, `config.*`, `tokenizer` and the weights, either float32 tensors `param/*`
// or float16 blobs `param16/*` (models/model_io.hpp), plus `export.version` and `export.weights`
// (docs/checkpoint-format.md). A training checkpoint also carries the AdamW moments (twice the
// weights), the options, the RNG and the data cursor; the export drops them, so it is a third of
// the checkpoint's size in float32 and a sixth in float16. Float16 rounds each weight to 11
// significant bits (a relative error of at most 2^-11); tests/test_pretrained.cpp measures what
// that does to the logits.
//
// PretrainedModel::load accepts both kinds of file and every model kind (through
// visit_model_kind), and checks them as generate does: ranges of every config field, weights that
// fill their shapes and are finite, a tokenizer that fits the model. It needs no training text.
// POSIX only, as io/checkpoint.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqgen/generate/generate_text.hpp"
#include "seqgen/io/checkpoint.hpp"
#include "seqgen/models/model_io.hpp"

namespace seqgen {

enum class WeightPrecision { float32, float16 };

// The version of the exported-model layout this build writes and reads.
inline constexpr std::int64_t kExportVersion = 1;

// Writes `model` and its tokenizer, weights only, to `path` (atomically, as a checkpoint).
// ConfigError when a weight is not finite or, in float16, beyond 65504.
template <typename Model>
void export_model(const Model& model, const Tokenizer& tokenizer, const std::string& path,
                  WeightPrecision precision = WeightPrecision::float32) {
  check<ConfigError>(tokenizer.vocab_size() == model.config.vocab_size, "export_model: the tokenizer has ",
                     tokenizer.vocab_size(), " symbols but the model's vocabulary has ", model.config.vocab_size);
  model.for_each_param([&](const auto& p) {
    check<ConfigError>(p.value.allFinite(), "export_model: parameter '", p.name, "' holds a NaN or infinite value");
  });
  CheckpointWriter w;
  w.put_string("model.kind", Model::kind());
  write_config(w, model.config);
  w.put_bytes("tokenizer", tokenizer.to_bytes());
  w.put_int("export.version", kExportVersion);
  w.put_string("export.weights", precision == WeightPrecision::float16 ? "float16" : "float32");
  if (precision == WeightPrecision::float16)
    write_params_half(w, model);
  else
    write_params(w, model);
  w.save(path);
}

// Whether checkpoint r is an exported model (weights only) rather than a training checkpoint.
inline bool is_exported_model(const CheckpointReader& r) { return r.has("export.version"); }

class PretrainedModel {
 public:
  // Opens a training checkpoint or an exported model of any kind. IoError when the file cannot be
  // read, FormatError when it is not a valid seqgen model (the message names the file and why).
  static PretrainedModel load(const std::string& path) { return load(CheckpointReader::load(path)); }
  static PretrainedModel load(const CheckpointReader& r) {
    if (is_exported_model(r)) {
      const std::int64_t version = r.get_int("export.version");
      check<FormatError>(version >= 1 && version <= kExportVersion, r.source(), ": export.version ", version,
                         " is not one this build reads (1 to ", kExportVersion, "): written by a newer seqgen?");
    }
    PretrainedModel out;
    out.kind_ = checkpoint_model_kind(r);
    out.precision_ = has_half_weights(r) ? WeightPrecision::float16 : WeightPrecision::float32;
    out.exported_ = is_exported_model(r);
    visit_model_kind(out.kind_, [&](auto type) {
      using Model = typename decltype(type)::type;
      auto held = std::make_shared<Held<Model>>(load_model<Model>(r));
      out.tokenizer_ = load_tokenizer(r, held->model.config.vocab_size);
      out.num_params_ = count_params(held->model);
      out.model_ = std::move(held);
    });
    return out;
  }

  // "gpt", "rnn", "lstm" or "gru".
  const std::string& kind() const { return kind_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  Index num_params() const { return num_params_; }
  // How the file stored the weights (they are float32 in memory either way).
  WeightPrecision stored_precision() const { return precision_; }
  bool exported() const { return exported_; }

  // The model itself, for code that needs its type (a decoder of its own, the logits): Model is
  // Gpt<float>, RnnLm<float>, LstmLm<float> or GruLm<float>. ConfigError when it is another kind.
  template <typename Model>
  const Model& get() const {
    const auto* held = dynamic_cast<const Held<Model>*>(model_.get());
    check<ConfigError>(held != nullptr, "PretrainedModel::get: the model is a '", kind_, "', not a '",
                       Model::kind(), "'");
    return held->model;
  }

  // One continuation of `prompt`, at most `new_tokens` tokens (see generate_text.hpp for the stop
  // strings, the streaming callback and the prompt policy).
  std::string generate(const std::string& prompt, Index new_tokens, const SamplingOptions& sampling, Rng& rng,
                       const std::function<void(const std::string&)>& on_text = {},
                       const PromptOptions& prompt_options = {}) const {
    TextCallback each;
    if (on_text) each = [&](Index, const std::string& piece) { on_text(piece); };
    return generate_samples(prompt, 1, new_tokens, sampling, rng, each, nullptr, prompt_options).front();
  }
  // `samples` continuations decoded together as a batch.
  std::vector<std::string> generate_samples(const std::string& prompt, Index samples, Index new_tokens,
                                            const SamplingOptions& sampling, Rng& rng, const TextCallback& on_text = {},
                                            GenerationStats* stats = nullptr,
                                            const PromptOptions& prompt_options = {}) const {
    check<ConfigError>(model_ != nullptr, "PretrainedModel: no model loaded (use PretrainedModel::load)");
    return model_->generate(tokenizer_, prompt, samples, new_tokens, sampling, rng, on_text, stats, prompt_options);
  }

 private:
  // The model behind one interface, so that this class names no model family: a new one is known
  // here once visit_model_kind knows it.
  struct Base {
    virtual ~Base() = default;
    virtual std::vector<std::string> generate(const Tokenizer& tok, const std::string& prompt, Index samples,
                                              Index new_tokens, const SamplingOptions& sampling, Rng& rng,
                                              const TextCallback& on_text, GenerationStats* stats,
                                              const PromptOptions& prompt_options) const = 0;
  };
  template <typename Model>
  struct Held final : Base {
    explicit Held(Model m) : model(std::move(m)) {}
    std::vector<std::string> generate(const Tokenizer& tok, const std::string& prompt, Index samples, Index new_tokens,
                                      const SamplingOptions& sampling, Rng& rng, const TextCallback& on_text,
                                      GenerationStats* stats, const PromptOptions& prompt_options) const override {
      return seqgen::generate_samples(model, tok, prompt, samples, new_tokens, sampling, rng, on_text, stats,
                                      prompt_options);
    }
    Model model;
  };

  std::shared_ptr<const Base> model_;  // immutable once loaded: copies share it
  Tokenizer tokenizer_;
  std::string kind_;
  Index num_params_ = 0;
  WeightPrecision precision_ = WeightPrecision::float32;
  bool exported_ = false;
};

// Exports the model of checkpoint `from` (a training checkpoint or an export) to `to`, weights only.
// Returns the model as loaded, so that a caller can report what it wrote.
inline PretrainedModel export_model(const std::string& from, const std::string& to,
                                    WeightPrecision precision = WeightPrecision::float32) {
  const PretrainedModel model = PretrainedModel::load(from);
  visit_model_kind(model.kind(), [&](auto type) {
    using Model = typename decltype(type)::type;
    export_model(model.get<Model>(), model.tokenizer(), to, precision);
  });
  return model;
}

}  // namespace seqgen
