// The smallest complete use of seqgen's GPT: build, train on a string, save, load, sample.
#include <seqgen/seqgen.hpp>

#include <cstdio>
#include <string>

int main() {
  using namespace seqgen;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "the quick brown fox jumps over the lazy dog. ";

  // Tokens are the characters of the text; the last 10% is held out for validation.
  const Tokenizer tokenizer = Tokenizer::characters(text);
  const TokenDataset data = TokenDataset::from_text(text, tokenizer);

  GptConfig config;
  config.vocab_size = tokenizer.vocab_size();
  config.context = 32;
  config.channels = 64;
  config.layers = 2;
  config.heads = 4;
  Rng rng(42);
  Gpt<float> model(config, rng);

  TrainOptions options;
  options.batch = 8;
  options.seq_len = 32;
  options.steps = 300;
  options.lr = 3e-3;
  options.warmup = 20;
  Trainer<Gpt<float>> trainer(model, tokenizer, data, options);
  for (int step = 1; step <= options.steps; ++step) {
    const double loss = trainer.step();
    if (step % 50 == 0) std::printf("step %3d  train loss %.3f\n", step, loss);
  }
  std::printf("validation loss %.3f nats/char\n", trainer.evaluate(Split::val, 8));

  trainer.save("minimal_gpt.ckpt");
  auto loaded = Trainer<Gpt<float>>::load("minimal_gpt.ckpt", data);

  SamplingOptions sampling;
  sampling.temperature = 0.5;
  Rng sample_rng(1);
  std::printf("sample: the%s\n",
              generate_text(loaded.model, loaded.tokenizer, "the", 60, sampling, sample_rng).c_str());
  return 0;
}
