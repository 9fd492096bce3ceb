// The smallest complete use of seqgen's recurrent models: build an LSTM language model, train it
// on a string with truncated backpropagation through time, save, load, sample.
#include <seqgen/seqgen.hpp>

#include <cstdio>
#include <string>

int main() {
  using namespace seqgen;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "to be or not to be, that is the question. ";

  const Tokenizer tokenizer = Tokenizer::characters(text);
  const TokenDataset data = TokenDataset::from_text(text, tokenizer);

  RecurrentConfig config;
  config.cell = CellKind::lstm;  // or rnn, gru (with RnnLm / GruLm below)
  config.vocab_size = tokenizer.vocab_size();
  config.embedding = 32;
  config.hidden = 128;
  config.layers = 1;
  Rng rng(42);
  LstmLm<float> model(config, rng);

  // B streams read the text in order; the hidden state carries from one batch to the next.
  TrainOptions options;
  options.batch = 8;
  options.seq_len = 32;
  options.steps = 300;
  options.lr = 1e-2;
  options.warmup = 20;
  Trainer<LstmLm<float>> trainer(model, tokenizer, data, options);
  for (int step = 1; step <= options.steps; ++step) {
    const double loss = trainer.step();
    if (step % 50 == 0) std::printf("step %3d  train loss %.3f\n", step, loss);
  }
  std::printf("validation loss %.3f nats/char\n", trainer.evaluate(Split::val, 8));

  trainer.save("minimal_rnn.ckpt");
  auto loaded = Trainer<LstmLm<float>>::load("minimal_rnn.ckpt", data);

  SamplingOptions sampling;
  sampling.temperature = 0.5;
  Rng sample_rng(1);
  std::printf("sample: to be%s\n",
              generate_text(loaded.model, loaded.tokenizer, "to be", 60, sampling, sample_rng).c_str());
  return 0;
}
