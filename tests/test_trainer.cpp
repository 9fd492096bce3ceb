// Training runs and exact resume: N steps, save, load, M steps == N + M steps, bit for bit.
#include <seqgen/core/parallel.hpp>
#include <seqgen/train/trainer.hpp>

#include <filesystem>
#include <unistd.h>

#include "test_util.hpp"

using namespace seqgen;

namespace {

const char* kText =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair.";

TrainOptions small_options() {
  TrainOptions o;
  o.batch = 2;
  o.seq_len = 8;
  o.steps = 40;
  o.lr = 3e-3;
  o.min_lr = 3e-4;
  o.warmup = 3;
  o.seed = 7;
  return o;
}

template <typename Model>
std::vector<float> flat_params(Model& model) {
  std::vector<float> all;
  model.for_each_param([&](Param<float>& p) { all.insert(all.end(), p.value.data(), p.value.data() + p.size()); });
  return all;
}

// A file name of our own: ctest runs the test cases in parallel processes.
std::string temp_path(const std::string& stem) {
  return (std::filesystem::temp_directory_path() / (stem + "_" + std::to_string(::getpid()) + ".ckpt")).string();
}

template <typename Model>
void check_exact_resume(Model fresh, const Tokenizer& tok, const TokenDataset& data, int N = 5, int M = 7) {
  set_num_threads(1);
  const auto path = temp_path("seqgen_test_resume");
  Trainer<Model> straight(fresh, tok, data, small_options());
  std::vector<double> straight_losses;
  for (int i = 0; i < N + M; ++i) straight_losses.push_back(straight.step());

  Trainer<Model> first(fresh, tok, data, small_options());
  std::vector<double> losses;
  for (int i = 0; i < N; ++i) losses.push_back(first.step());
  first.save(path);
  auto resumed = Trainer<Model>::load(path, data);
  REQUIRE(resumed.step_count() == N);
  for (int i = 0; i < M; ++i) losses.push_back(resumed.step());
  std::filesystem::remove(path);

  REQUIRE(losses == straight_losses);  // bit-identical, not approximately
  REQUIRE(flat_params(resumed.model) == flat_params(straight.model));
  REQUIRE(losses.back() < losses.front());
}

}  // namespace

TEST_CASE("Trainer: GPT resumes bit-identically from a checkpoint", "[trainer][resume]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  GptConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.context = 8;
  cfg.channels = 16;
  cfg.layers = 2;
  cfg.heads = 2;
  cfg.dropout = 0.1;  // the dropout masks come from the saved generator too
  Rng rng(3);
  check_exact_resume(Gpt<float>(cfg, rng), tok, data);
}

TEST_CASE("Trainer: LSTM and GRU resume bit-identically, carried state included", "[trainer][resume]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  RecurrentConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.embedding = 8;
  cfg.hidden = 16;
  cfg.layers = 2;
  Rng rng(4);
  cfg.cell = CellKind::lstm;
  // 14 steps per pass over the streams: the resumed part crosses two wraps (state resets).
  check_exact_resume(LstmLm<float>(cfg, rng), tok, data, 10, 20);
  cfg.cell = CellKind::gru;
  check_exact_resume(GruLm<float>(cfg, rng), tok, data);
}

TEST_CASE("Trainer: loading a checkpoint of another model kind is a clear error", "[trainer][errors]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  RecurrentConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.embedding = 4;
  cfg.hidden = 4;
  cfg.layers = 1;
  cfg.cell = CellKind::rnn;
  Rng rng(5);
  Trainer<RnnLm<float>> trainer(RnnLm<float>(cfg, rng), tok, data, small_options());
  const auto path = temp_path("seqgen_test_kind");
  trainer.save(path);
  SEQGEN_THROWS_WITH(Trainer<Gpt<float>>::load(path, data), FormatError, "holds a 'rnn' model, expected 'gpt'");
  std::filesystem::remove(path);
}

TEST_CASE("Trainer: resuming on different text is a clear error", "[trainer][errors]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  const TokenDataset other_split = TokenDataset::from_text(kText, tok, 0.3);
  GptConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.context = 8;
  cfg.channels = 8;
  cfg.layers = 1;
  cfg.heads = 1;
  Rng rng(6);
  Trainer<Gpt<float>> trainer(Gpt<float>(cfg, rng), tok, data, small_options());
  const auto path = temp_path("seqgen_test_data");
  trainer.save(path);
  SEQGEN_THROWS_WITH(Trainer<Gpt<float>>::load(path, other_split), FormatError, "was trained on a different text");
  // Same length, one character changed: only the CRC-32 tells them apart.
  std::string edited = kText;
  edited[10] = edited[10] == 'e' ? 't' : 'e';
  const TokenDataset same_size = TokenDataset::from_text(edited, tok, 0.2);
  REQUIRE(same_size.size(Split::train) == data.size(Split::train));
  SEQGEN_THROWS_WITH(Trainer<Gpt<float>>::load(path, same_size), FormatError, "was trained on a different text");
  std::filesystem::remove(path);
}

TEST_CASE("Trainer: batched GPT evaluation equals scoring each window alone", "[trainer]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  GptConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.context = 4;
  cfg.channels = 8;
  cfg.layers = 1;
  cfg.heads = 2;
  Rng rng(8);
  TrainOptions o = small_options();
  o.seq_len = 4;
  Trainer<Gpt<float>> trainer(Gpt<float>(cfg, rng), tok, data, o);
  // 229 training tokens: 57 windows of 4, not a multiple of the batch of 32.
  const Index n = data.num_eval_windows(Split::train, 4);
  REQUIRE(n % 32 != 0);
  double sum = 0;
  std::vector<Token> in, tg;
  Gpt<float>::Activations act;
  for (Index i = 0; i < n; ++i) {
    data.eval_window(Split::train, i, 4, in, tg);
    sum += trainer.model.forward(in, tg, 1, 4, act, rng, false);
  }
  REQUIRE(trainer.evaluate(Split::train, 1000) == Approx(sum / double(n)).epsilon(1e-5));
  SEQGEN_THROWS_WITH(trainer.evaluate(Split::train, 0), ConfigError, "max_windows must be positive");
}
