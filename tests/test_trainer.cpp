// Training runs and exact resume (N steps, save, load, M steps == N + M steps, bit for bit),
// non-finite steps (stop or skip, never saved) and failed saves that keep the previous checkpoint.
#include <seqgen/core/parallel.hpp>
#include <seqgen/train/trainer.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "test_util.hpp"

namespace test_trainer {  // see "Unity build" in tests/CMakeLists.txt

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

Gpt<float> small_gpt(const Tokenizer& tok, std::uint64_t seed, Index layers = 1) {
  GptConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.context = 8;
  cfg.channels = 16;
  cfg.layers = layers;
  cfg.heads = 2;
  cfg.dropout = 0.1;
  Rng rng(seed);
  return Gpt<float>(cfg, rng);
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

// N + M steps straight against N steps, a save and M steps resumed; `recompute`: the second run,
// before and after its save, recomputes its activations (Trainer::set_recompute).
template <typename Model>
void check_exact_resume(Model fresh, const Tokenizer& tok, const TokenDataset& data, int N = 5, int M = 7,
                        bool recompute = false) {
  set_num_threads(1);
  const auto path = temp_path("seqgen_test_resume");
  Trainer<Model> straight(fresh, tok, data, small_options());
  std::vector<double> straight_losses;
  for (int i = 0; i < N + M; ++i) straight_losses.push_back(straight.step());

  Trainer<Model> first(fresh, tok, data, small_options());
  first.set_recompute(recompute);
  std::vector<double> losses;
  for (int i = 0; i < N; ++i) losses.push_back(first.step());
  first.save(path);
  auto resumed = Trainer<Model>::load(path, data);
  resumed.set_recompute(recompute);
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

TEST_CASE("Trainer: recomputing a GPT's activations changes no loss or weight; recurrent models refuse it",
          "[trainer][resume]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  // Recomputing, saved, and resumed recomputing again, against a plain run.
  check_exact_resume(small_gpt(tok, 5, 3), tok, data, 4, 5, true);

  RecurrentConfig rcfg;
  rcfg.vocab_size = tok.vocab_size();
  rcfg.cell = CellKind::lstm;
  Rng rng(5);
  Trainer<LstmLm<float>> lstm(LstmLm<float>(rcfg, rng), tok, data, small_options());
  lstm.set_recompute(false);
  SEQGEN_THROWS_WITH(lstm.set_recompute(true), ConfigError, "recomputing activations is for GPT models, not lstm");
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
  NoState none;
  for (Index i = 0; i < n; ++i) {
    data.eval_window(Split::train, i, 4, in, tg);
    sum += trainer.model.forward(in, tg, 1, 4, none, act, rng, false);
  }
  REQUIRE(trainer.evaluate(Split::train, 1000) == Approx(sum / double(n)).epsilon(1e-5));
  SEQGEN_THROWS_WITH(trainer.evaluate(Split::train, 0), ConfigError, "max_windows must be positive");
}

// ---- Numerical health: non-finite steps (see the file comment of train/trainer.hpp) ----

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Files that an interrupted atomic save of `path` would leave behind.
int temp_files_of(const std::string& path) {
  const std::filesystem::path p(path);
  const std::string stem = p.filename().string() + ".tmp.";
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(p.parent_path()))
    n += entry.path().filename().string().compare(0, stem.size(), stem) == 0;
  return n;
}

}  // namespace

TEST_CASE("Trainer: a NaN gradient stops training, names the step and applies no update", "[trainer][nonfinite]") {
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  Trainer<Gpt<float>> trainer(small_gpt(tok, 21), tok, data, small_options());
  bool inject = false;
  trainer.on_gradients = [&](Gpt<float>& m) {
    if (inject) m.blocks[0].mlp.fc.weight.grad(1, 2) = std::numeric_limits<float>::quiet_NaN();
  };
  trainer.step();
  trainer.step();
  const auto before = flat_params(trainer.model);
  inject = true;
  SEQGEN_THROWS_WITH(trainer.step(), NonFiniteError,
                     "Trainer: step 3 has a non-finite gradient norm (loss ");
  SEQGEN_THROWS_WITH(trainer.step(), NonFiniteError, "0 non-finite steps were skipped before, skip_nonfinite allows 0");
  REQUIRE(trainer.step_count() == 2);
  REQUIRE(flat_params(trainer.model) == before);
  REQUIRE(std::isnan(trainer.last_grad_norm()));
  // Training goes on once the gradients are finite again.
  inject = false;
  REQUIRE(std::isfinite(trainer.step()));
  REQUIRE(trainer.step_count() == 3);
  REQUIRE(flat_params(trainer.model) != before);
}

TEST_CASE("Trainer: a NaN weight gives a non-finite loss and is never saved over a good checkpoint",
          "[trainer][nonfinite]") {
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  Trainer<Gpt<float>> trainer(small_gpt(tok, 22), tok, data, small_options());
  trainer.step();
  const auto path = temp_path("seqgen_test_nan_save");
  trainer.save(path);
  const std::string good = read_bytes(path);
  REQUIRE(good.size() > 1000);

  trainer.model.wpe.weight.value(0, 3) = std::numeric_limits<float>::infinity();
  SEQGEN_THROWS_WITH(trainer.step(), NonFiniteError, "Trainer: step 2 has a non-finite loss (loss ");
  SEQGEN_THROWS_WITH(trainer.save(path), NonFiniteError,
                     "Trainer::save: parameter 'wpe.weight' holds a NaN or infinite value at step 1; not writing");
  REQUIRE(read_bytes(path) == good);
  REQUIRE(temp_files_of(path) == 0);
  // The good checkpoint still resumes.
  auto resumed = Trainer<Gpt<float>>::load(path, data);
  REQUIRE(resumed.step_count() == 1);
  REQUIRE(std::isfinite(resumed.step()));
  std::filesystem::remove(path);
}

TEST_CASE("Trainer: skip_nonfinite skips exactly the update of a non-finite step, up to N", "[trainer][nonfinite]") {
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  TrainOptions o = small_options();
  o.skip_nonfinite = 2;
  Trainer<Gpt<float>> trainer(small_gpt(tok, 23), tok, data, o);
  int inject = 0;  // 1: an infinite gradient, 2: a NaN one
  trainer.on_gradients = [&](Gpt<float>& m) {
    if (inject == 1) m.ln_f.bias.grad(0, 0) = std::numeric_limits<float>::infinity();
    if (inject == 2) m.wte.weight.grad(3, 1) = -std::numeric_limits<float>::quiet_NaN();
  };
  trainer.step();
  trainer.step();
  // A copy that never sees the bad step: after the skip, given the generator the skip left (the
  // skipped batch is consumed), it must take exactly the steps the original takes. Any update of
  // the weights, the AdamW moments or the step count by the skipped step would show.
  Trainer<Gpt<float>> reference = trainer;
  reference.on_gradients = nullptr;
  inject = 1;
  const double skipped_loss = trainer.step();
  REQUIRE(std::isfinite(skipped_loss));  // the loss was fine, the gradient was not
  REQUIRE(trainer.last_step_skipped());
  REQUIRE(std::isinf(trainer.last_grad_norm()));
  REQUIRE(trainer.step_count() == 2);
  REQUIRE(trainer.skipped_steps() == 1);
  REQUIRE(flat_params(trainer.model) == flat_params(reference.model));
  inject = 0;
  reference.rng().set_state(trainer.rng().state());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(trainer.step() == reference.step());
    REQUIRE_FALSE(trainer.last_step_skipped());
  }
  REQUIRE(flat_params(trainer.model) == flat_params(reference.model));
  REQUIRE(trainer.step_count() == 5);

  // The count is saved: a resumed run has one skip left of its two.
  const auto path = temp_path("seqgen_test_skip");
  trainer.save(path);
  auto resumed = Trainer<Gpt<float>>::load(path, data);
  std::filesystem::remove(path);
  REQUIRE(resumed.skipped_steps() == 1);
  REQUIRE(resumed.options.skip_nonfinite == 2);
  resumed.on_gradients = trainer.on_gradients;
  inject = 2;
  resumed.step();
  REQUIRE(resumed.last_step_skipped());
  REQUIRE(resumed.skipped_steps() == 2);
  SEQGEN_THROWS_WITH(resumed.step(), NonFiniteError,
                     "step 6 has a non-finite gradient norm (loss ");
  SEQGEN_THROWS_WITH(resumed.step(), NonFiniteError, "2 non-finite steps were skipped before, skip_nonfinite allows 2");
  REQUIRE(resumed.step_count() == 5);
}

TEST_CASE("Trainer: an LSTM run with a skipped step still resumes bit-identically", "[trainer][nonfinite][resume]") {
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  RecurrentConfig cfg;
  cfg.vocab_size = tok.vocab_size();
  cfg.embedding = 8;
  cfg.hidden = 16;
  cfg.layers = 2;
  cfg.cell = CellKind::lstm;
  Rng rng(24);
  const LstmLm<float> fresh(cfg, rng);
  TrainOptions o = small_options();
  o.skip_nonfinite = 1;
  int calls = 0;
  // The third step gets a NaN gradient; the carried state is reset and training goes on.
  auto hook = [&](LstmLm<float>& m) {
    if (++calls == 3) m.layers[1].cell.weight_hh.grad(0, 0) = std::numeric_limits<float>::quiet_NaN();
  };
  Trainer<LstmLm<float>> straight(fresh, tok, data, o);
  straight.on_gradients = hook;
  std::vector<double> straight_losses;
  for (int i = 0; i < 10; ++i) straight_losses.push_back(straight.step());
  REQUIRE(straight.skipped_steps() == 1);
  REQUIRE(straight.step_count() == 9);
  REQUIRE(std::isfinite(straight_losses.back()));

  calls = 0;
  Trainer<LstmLm<float>> first(fresh, tok, data, o);
  first.on_gradients = hook;
  std::vector<double> losses;
  for (int i = 0; i < 5; ++i) losses.push_back(first.step());
  const auto path = temp_path("seqgen_test_skip_lstm");
  first.save(path);
  auto resumed = Trainer<LstmLm<float>>::load(path, data);
  std::filesystem::remove(path);
  for (int i = 0; i < 5; ++i) losses.push_back(resumed.step());
  REQUIRE(losses == straight_losses);
  REQUIRE(flat_params(resumed.model) == flat_params(straight.model));
}

TEST_CASE("Trainer: a save that fails midway (file size limit, not a folder) keeps the previous checkpoint",
          "[trainer][io]") {
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.2);
  Trainer<Gpt<float>> trainer(small_gpt(tok, 25), tok, data, small_options());
  const auto path = temp_path("seqgen_test_failed_save");
  trainer.save(path);
  const std::string good = read_bytes(path);
  trainer.step();

  // A full disk without privileges: RLIMIT_FSIZE makes write() fail (EFBIG) once the temporary file
  // reaches half the checkpoint's size. SIGXFSZ, which would kill the process, is ignored meanwhile.
  struct rlimit saved_limit;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_limit) == 0);
  struct sigaction ignore {}, saved_action {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  REQUIRE(::sigaction(SIGXFSZ, &ignore, &saved_action) == 0);
  struct rlimit small = saved_limit;
  small.rlim_cur = good.size() / 2;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string error;
  try {
    trainer.save(path);
  } catch (const IoError& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved_limit);
  ::sigaction(SIGXFSZ, &saved_action, nullptr);
  INFO(error);
  REQUIRE(error.find("cannot save checkpoint '" + path + "': write to '" + path + ".tmp.") == 0);
  REQUIRE(error.find("File too large") != std::string::npos);
  REQUIRE(read_bytes(path) == good);
  REQUIRE(temp_files_of(path) == 0);

  // A folder that is a regular file (ENOTDIR): the same, and works without privileges too.
  SEQGEN_THROWS_WITH(trainer.save(path + "/inside.ckpt"), IoError, "Not a directory");
  REQUIRE(read_bytes(path) == good);
  REQUIRE(temp_files_of(path) == 0);
  std::filesystem::remove(path);
}

}  // namespace test_trainer
