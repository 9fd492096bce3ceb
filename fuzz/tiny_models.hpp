// What the model targets share: the fixed text, its tokenizer and dataset, the tiny models trained
// on it for the seed checkpoints, and what the CLIs do with a checkpoint (generate, resume).
#pragma once

#include <string>

#include "harness.hpp"

namespace seqgen_fuzz {

// The text every seed training run read; Trainer::load refuses a checkpoint of another text.
inline const std::string& fixed_text() {
  static const std::string text = [] {
    std::string t;
    for (int i = 0; i < 12; ++i) t += "to be or not to be, that is the question.\n";
    return t;
  }();
  return text;
}
inline const Tokenizer& fixed_tokenizer() {
  static const Tokenizer tok = Tokenizer::characters(fixed_text());
  return tok;
}
inline const TokenDataset& fixed_dataset() {
  static const TokenDataset data = TokenDataset::from_text(fixed_text(), fixed_tokenizer(), 0.1);
  return data;
}

// Models small enough that a checkpoint stays a few KB.
inline GptConfig tiny_gpt(bool tie, Index layers) {
  GptConfig c;
  c.vocab_size = fixed_tokenizer().vocab_size();
  c.context = 8;
  c.channels = 4;
  c.layers = layers;
  c.heads = 2;
  c.tie_weights = tie;
  return c;
}
inline RecurrentConfig tiny_recurrent(CellKind cell, Index layers) {
  RecurrentConfig c;
  c.cell = cell;
  c.vocab_size = fixed_tokenizer().vocab_size();
  c.embedding = 3;
  c.hidden = 4;
  c.layers = layers;
  return c;
}

// A training run of two steps on fixed_text(), as Trainer::save writes it.
template <typename Model, typename Config>
std::string trained_checkpoint(const Config& config) {
  Rng rng(11);
  Model model(config, rng);
  TrainOptions options;
  options.batch = 2;
  options.seq_len = 6;
  options.steps = 10;
  options.warmup = 1;
  Trainer<Model> trainer(std::move(model), fixed_tokenizer(), fixed_dataset(), options);
  trainer.step();
  trainer.step();
  const TempFile file("seed", "");
  trainer.save(file.path());
  return file.contents();
}

// The same run exported for inference (generate/pretrained.hpp): config, tokenizer and weights in
// float32 or float16, no optimizer state.
template <typename Model, typename Config>
std::string exported_model(const Config& config, WeightPrecision precision) {
  Rng rng(11);
  TrainOptions options;
  options.batch = 2;
  options.seq_len = 6;
  options.steps = 10;
  options.warmup = 1;
  Trainer<Model> trainer(Model(config, rng), fixed_tokenizer(), fixed_dataset(), options);
  trainer.step();
  trainer.step();
  const TempFile file("seed", "");
  export_model(trainer.model, trainer.tokenizer, file.path(), precision);
  return file.contents();
}

// What `generate` does with a checkpoint or an exported model: the model, its tokenizer, a few
// tokens; and the same through the one call a program of its own makes (PretrainedModel).
template <typename Model>
void generate_from(const CheckpointReader& r) {
  try {
    Rng rng(2);
    PretrainedModel::load(r).generate("to be", 3, SamplingOptions{}, rng);
  } catch (const Error&) {
  }
  const Model model = load_model<Model>(r);
  const Tokenizer tok = Tokenizer::from_bytes(r.get_bytes("tokenizer"));
  Rng rng(1);
  SamplingOptions options;
  options.top_k = 5;
  options.top_p = 0.9;
  generate_samples(model, tok, "to be", 2, 4, options, rng);
  generate_samples(model, tok, "", 1, 2, SamplingOptions{}, rng);  // from the start token
}

// What `train --resume` does: the whole run, then a step and an evaluation when the stored batch
// is small (a checkpoint may ask for a batch of 2^20 windows, which is the user's business).
template <typename Model>
void resume_from(const CheckpointReader& r) {
  Trainer<Model> t = Trainer<Model>::load(r, fixed_dataset());
  if (t.options.batch * t.options.seq_len > 64) return;
  t.step();
  t.evaluate(Split::val, 1);
}

// Both, each on its own: a checkpoint refused by one may still reach the other.
template <typename Model>
void generate_and_resume(const CheckpointReader& r) {
  try {
    generate_from<Model>(r);
  } catch (const Error&) {
  }
  try {
    resume_from<Model>(r);
  } catch (const Error&) {
  }
}

}  // namespace seqgen_fuzz
