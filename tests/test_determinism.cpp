// Determinism of training (docs/reliability.md): with the same seed and thread count two runs give
// bit-identical losses and weights; between 1 and 2 threads the losses after 20 steps agree to 1e-4
// relative. The models are just big enough for the threaded paths to run: Eigen's GEMMs (split
// across threads above ~1e5 multiply-adds), attention's (b, h) loop, LayerNorm, GELU and the LSTM
// gate loops (at kParallelMinWork = 32768 scalars and above), and for the GPT AdamW and the gradient
// norm of its MLP weights (65536 scalars, their threshold).
#include <seqgen/core/parallel.hpp>
#include <seqgen/train/trainer.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace test_determinism {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

// About 5,000 characters of varied text (a fixed pseudo-random mix of words).
std::string corpus() {
  const char* words[] = {"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog, ", "and ", "then ",
                         "sleeps. ", "A ", "river ", "runs ", "past ", "old ", "mills; ", "we ", "count ", "stars!\n"};
  Rng rng(99);
  std::string text;
  while (text.size() < 5000) text += words[rng.uniform_int(20)];
  return text;
}

struct Run {
  std::vector<double> losses;
  std::vector<float> weights;
};

template <typename Model>
Run train(const Model& fresh, const Tokenizer& tok, const TokenDataset& data, const TrainOptions& o, int threads,
          int steps) {
  set_num_threads(threads);
  Trainer<Model> trainer(fresh, tok, data, o);
  Run run;
  for (int i = 0; i < steps; ++i) run.losses.push_back(trainer.step());
  trainer.model.for_each_param(
      [&](Param<float>& p) { run.weights.insert(run.weights.end(), p.value.data(), p.value.data() + p.size()); });
  return run;
}

template <typename Model>
void check_determinism(const Model& fresh, const Tokenizer& tok, const TokenDataset& data, const TrainOptions& o) {
  const int saved = num_threads();
  constexpr int kSteps = 20;
  const Run a = train(fresh, tok, data, o, 2, kSteps);
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  REQUIRE(num_threads() == 2);  // the runs above and below really are on two threads
#endif
  const Run b = train(fresh, tok, data, o, 2, kSteps);
  const Run one = train(fresh, tok, data, o, 1, kSteps);
  set_num_threads(saved);

  // Same seed, same thread count: bit for bit.
  REQUIRE(a.losses == b.losses);
  REQUIRE(a.weights == b.weights);
  // The run learns (so the comparison is not between two constant curves).
  REQUIRE(a.losses.back() < a.losses.front() - 0.1);
  // 1 thread against 2: the same to 1e-4 relative at every step.
  double worst = 0;
  for (int i = 0; i < kSteps; ++i) worst = std::max(worst, std::abs(one.losses[i] - a.losses[i]) / a.losses[i]);
  INFO("largest relative loss difference between 1 and 2 threads: " << worst
                                                                     << (one.losses == a.losses ? " (bit-identical)" : ""));
  REQUIRE(worst <= 1e-4);  // with -s, Catch prints the INFO above: the measured difference
}

}  // namespace

TEST_CASE("Determinism: GPT training is bit-identical at a fixed thread count, within 1e-4 across 1 and 2",
          "[determinism][trainer]") {
  const std::string text = corpus();
  const Tokenizer tok = Tokenizer::characters(text);
  const TokenDataset data = TokenDataset::from_text(text, tok, 0.1);
  GptConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.context = 32;
  cfg.channels = 128;  // LayerNorm and GELU see C·N = 128·256 and 512·256 scalars: threaded
  cfg.layers = 2;
  cfg.heads = 4;
  cfg.dropout = 0.1;  // the dropout masks come from the generator too
  Rng rng(1);
  TrainOptions o;
  o.batch = 8;
  o.seq_len = 32;
  o.steps = 20;
  o.lr = 3e-3;
  o.warmup = 2;
  o.seed = 5;
  check_determinism(Gpt<float>(cfg, rng), tok, data, o);
}

TEST_CASE("Determinism: LSTM training is bit-identical at a fixed thread count, within 1e-4 across 1 and 2",
          "[determinism][trainer]") {
  const std::string text = corpus();
  const Tokenizer tok = Tokenizer::characters(text);
  const TokenDataset data = TokenDataset::from_text(text, tok, 0.1);
  RecurrentConfig cfg;
  cfg.cell = CellKind::lstm;
  cfg.vocab_size = tok.vocab_size();
  cfg.embedding = 32;
  cfg.hidden = 64;  // the gates of a chunk are 4H·N = 256·256 scalars; W_hh h is 256×64×16 per step
  cfg.layers = 2;
  Rng rng(2);
  TrainOptions o;
  o.batch = 16;
  o.seq_len = 16;
  o.steps = 20;
  o.lr = 3e-3;
  o.warmup = 2;
  o.seed = 6;
  check_determinism(LstmLm<float>(cfg, rng), tok, data, o);
}

}  // namespace test_determinism
