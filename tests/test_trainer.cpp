// Training runs and exact resume: N steps, save, load, M steps == N + M steps, bit for bit.
#include <seqgen/core/parallel.hpp>
#include <seqgen/train/trainer.hpp>

#include <filesystem>

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
  o.steps = 12;
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

template <typename Model>
void check_exact_resume(Model fresh, const Tokenizer& tok, const TokenDataset& data) {
  set_num_threads(1);
  const auto path = (std::filesystem::temp_directory_path() / "seqgen_test_resume.ckpt").string();
  const int N = 5, M = 7;

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
  check_exact_resume(LstmLm<float>(cfg, rng), tok, data);
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
  const auto path = (std::filesystem::temp_directory_path() / "seqgen_test_kind.ckpt").string();
  trainer.save(path);
  SEQGEN_THROWS_WITH(Trainer<Gpt<float>>::load(path, data), FormatError, "holds a 'rnn' model, expected 'gpt'");
  std::filesystem::remove(path);
}
