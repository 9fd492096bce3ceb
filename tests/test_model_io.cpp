// Models in checkpoints (models/model_io.hpp), the memory budget (core/memory.hpp,
// models/memory_estimate.hpp) and what a save can check before it is needed: each error names the
// file and the field, and nothing damaged or oversized is trusted.
#include <seqgen/core/memory.hpp>
#include <seqgen/models/memory_estimate.hpp>
#include <seqgen/generate/generate_text.hpp>
#include <seqgen/train/trainer.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "test_util.hpp"

namespace test_model_io {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

const char* kText = "the quick brown fox jumps over the lazy dog; the lazy dog sleeps by the river. ";

std::string text(int repeats) {
  std::string t;
  for (int i = 0; i < repeats; ++i) t += kText;
  return t;
}

GptConfig tiny_gpt(Index vocab) {
  GptConfig c;
  c.vocab_size = vocab;
  c.context = 16;
  c.channels = 8;
  c.layers = 1;
  c.heads = 2;
  return c;
}

// A checkpoint holding a GPT of vocabulary `vocab`, with `tokenizer` and one weight set to `first`.
CheckpointReader gpt_checkpoint(Index vocab, const Tokenizer& tokenizer, float first = 0.5f) {
  Rng rng(3);
  Gpt<float> model(tiny_gpt(vocab), rng);
  model.wte.weight.value(0, 0) = first;
  CheckpointWriter w;
  w.put_string("model.kind", "gpt");
  write_config(w, model.config);
  w.put_bytes("tokenizer", tokenizer.to_bytes());
  write_params(w, model);
  return CheckpointReader::from_bytes(w.to_bytes());
}

std::string temp_path(const std::string& stem) {
  return (std::filesystem::temp_directory_path() / (stem + "_" + std::to_string(::getpid()))).string();
}

}  // namespace

TEST_CASE("load_model and load_tokenizer take a consistent checkpoint", "[model_io]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const CheckpointReader r = gpt_checkpoint(tok.vocab_size(), tok);
  const Gpt<float> model = load_model<Gpt<float>>(r);
  CHECK(model.config.vocab_size == tok.vocab_size());
  CHECK(model.wte.weight.value(0, 0) == 0.5f);
  CHECK(load_tokenizer(r, model.config.vocab_size).vocab_size() == tok.vocab_size());
}

TEST_CASE("a tokenizer that does not fit the model is a damaged checkpoint", "[model_io]") {
  // A byte tokenizer (256 symbols) stored with a 20-symbol model: generate would print control bytes.
  const CheckpointReader r = gpt_checkpoint(20, Tokenizer::bytes());
  const Gpt<float> model = load_model<Gpt<float>>(r);
  SEQGEN_THROWS_WITH(load_tokenizer(r, model.config.vocab_size), FormatError,
                     "checkpoint (in memory): its tokenizer (bytes) has 256 symbols but its model's vocabulary has 20");
}

TEST_CASE("non-finite weights are a damaged checkpoint", "[model_io]") {
  const Tokenizer tok = Tokenizer::bytes();
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()})
    SEQGEN_THROWS_WITH(load_model<Gpt<float>>(gpt_checkpoint(256, tok, bad)), FormatError,
                       "tensor 'param/wte.weight' holds a NaN or infinite weight (the checkpoint is damaged)");
}

TEST_CASE("stored config and options are read with their ranges, naming the field", "[model_io]") {
  const auto with = [](const std::string& key, std::int64_t value) {
    CheckpointWriter w;
    w.put_string("model.kind", "gpt");
    GptConfig c = tiny_gpt(30);
    const std::vector<std::pair<std::string, std::int64_t>> ints = {
        {"config.vocab_size", c.vocab_size}, {"config.context", c.context}, {"config.channels", c.channels},
        {"config.layers", c.layers},         {"config.heads", c.heads},     {"config.tie_weights", 1}};
    for (const auto& [k, v] : ints) w.put_int(k, k == key ? value : v);
    w.put_double("config.dropout", 0.0);
    return CheckpointReader::from_bytes(w.to_bytes());
  };
  GptConfig c;
  SEQGEN_THROWS_WITH(read_config(with("config.channels", 0), c), FormatError,
                     "checkpoint (in memory): config.channels = 0 is out of range [1, 16777216]");
  SEQGEN_THROWS_WITH(read_config(with("config.layers", std::int64_t(1) << 62), c), FormatError,
                     "config.layers = 4611686018427387904 is out of range [1, 16777216]");
  SEQGEN_THROWS_WITH(read_config(with("config.tie_weights", 2), c), FormatError,
                     "config.tie_weights = 2 is out of range [0, 1]");
  // A rule between fields still names the file.
  SEQGEN_THROWS_WITH(read_config(with("config.heads", 3), c), FormatError,
                     "checkpoint (in memory): GptConfig: heads (3) must divide channels (8)");

  CheckpointWriter w;
  TrainOptions o;
  o.batch = 0;  // written as a hostile file would hold it
  write_options(w, o);
  SEQGEN_THROWS_WITH(read_options(CheckpointReader::from_bytes(w.to_bytes())), FormatError,
                     "checkpoint (in memory): train.batch = 0 is out of range [1, 1048576]");
  CheckpointWriter nan_lr;
  TrainOptions p;
  p.lr = std::nan("");
  write_options(nan_lr, p);
  SEQGEN_THROWS_WITH(read_options(CheckpointReader::from_bytes(nan_lr.to_bytes())), FormatError,
                     "train.lr = nan is out of range");
}

TEST_CASE("visit_model_kind maps every kind to its type and refuses others", "[model_io]") {
  CHECK(visit_model_kind("gpt", [](auto t) { return decltype(t)::type::kind(); }) == "gpt");
  CHECK(visit_model_kind("rnn", [](auto t) { return decltype(t)::type::kind(); }) == "rnn");
  CHECK(visit_model_kind("lstm", [](auto t) { return decltype(t)::type::kind(); }) == "lstm");
  CHECK(visit_model_kind("gru", [](auto t) { return decltype(t)::type::kind(); }) == "gru");
  SEQGEN_THROWS_WITH(visit_model_kind("xyz", [](auto) { return 0; }), FormatError, "unknown model kind 'xyz'");
}

TEST_CASE("require_memory refuses what the process cannot hold, before allocating", "[model_io][memory]") {
  const double avail = available_memory_bytes();
  CHECK(avail > 0);
  require_memory(1024, "a small request");
  SEQGEN_THROWS_WITH(require_memory(1e20, "the request 'x'", "lower --batch"), MemoryError,
                     "the request 'x' needs 9.31e+10 GiB, ");
  SEQGEN_THROWS_WITH(require_memory(1e20, "the request 'x'", "lower --batch"), MemoryError, "available (lower --batch)");
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(3.0 * 1024 * 1024 * 1024) == "3 GiB");
}

TEST_CASE("the training estimate grows with what a step keeps", "[model_io][memory]") {
  const GptConfig c = tiny_gpt(65);
  // Twice the batch adds exactly the activations of B more sequences.
  const double b1 = training_bytes(c, 1, 16, 1), b2 = training_bytes(c, 2, 16, 1), b3 = training_bytes(c, 3, 16, 1);
  CHECK(b2 - b1 == Approx(b3 - b2));
  CHECK(b2 - b1 == Approx(1.1 * 4 * 16 * gpt_floats_per_token(c, 16, true)));
  // The reference attention keeps NH·T probabilities per token and layer (a quadratic term in T),
  // the flash kernel 2·NH floats (linear in T).
  CHECK(gpt_floats_per_token(c, 32, true, true) - gpt_floats_per_token(c, 16, true, true) == Approx(2.0 * 16));
  // The default kernel: the reference below kFlashMinT, flash from there on.
  const Index T0 = CausalSelfAttention<float>::kFlashMinT;
  CHECK(gpt_floats_per_token(c, T0 - 1, true) == gpt_floats_per_token(c, T0 - 1, true, true));
  CHECK(gpt_floats_per_token(c, 2 * T0, true) == gpt_floats_per_token(c, T0, true));
  CHECK(gpt_floats_per_token(c, T0, true, true) - gpt_floats_per_token(c, T0, true) ==
        Approx(double(c.layers) * (double(T0) * c.heads - 2.0 * c.heads)));
  RecurrentConfig lstm;
  lstm.cell = CellKind::lstm;
  RecurrentConfig rnn = lstm;
  rnn.cell = CellKind::rnn;
  CHECK(recurrent_floats_per_token(lstm) - recurrent_floats_per_token(rnn) == Approx(8.0 * lstm.hidden * lstm.layers));
}

TEST_CASE("check_destination finds every unwritable --out before a save", "[model_io][io]") {
  const std::string dir = temp_path("seqgen_dest");
  std::filesystem::create_directories(dir);
  CheckpointWriter::check_destination(dir + "/m.ckpt");  // a new file in a writable folder
  CHECK_FALSE(std::filesystem::exists(dir + "/m.ckpt"));
  CHECK(std::filesystem::is_empty(dir));  // the probe left nothing behind
  SEQGEN_THROWS_WITH(CheckpointWriter::check_destination(""), IoError, "empty path");
  SEQGEN_THROWS_WITH(CheckpointWriter::check_destination(dir), IoError, "it is a folder");
  SEQGEN_THROWS_WITH(CheckpointWriter::check_destination(dir + "/missing/m.ckpt"), IoError,
                     "its folder '" + dir + "/missing': No such file or directory");
  REQUIRE(::mkfifo((dir + "/fifo").c_str(), 0644) == 0);
  SEQGEN_THROWS_WITH(CheckpointWriter::check_destination(dir + "/fifo"), IoError, "it exists and is not a regular file");
  SEQGEN_THROWS_WITH(CheckpointWriter::check_destination(dir + "/" + std::string(250, 'm')), IoError,
                     "File name too long");
  std::filesystem::remove_all(dir);
}

// A tiny GPT trainer on kText repeated 40 times, half of it held out.
struct TinyRun {
  std::string text_ = text(40);
  Tokenizer tok = Tokenizer::characters(text_);
  TokenDataset data = TokenDataset::from_text(text_, tok, 0.5);
  TrainOptions options = [] {
    TrainOptions o;
    o.batch = 2;
    o.seq_len = 8;
    o.steps = 10;
    o.warmup = 1;
    return o;
  }();
  Rng rng{1};
  Trainer<Gpt<float>> trainer{Gpt<float>(tiny_gpt(tok.vocab_size()), rng), tok, data, options};
};

TEST_CASE("evaluate stops between batches when asked", "[model_io][trainer]") {
  TinyRun run;
  REQUIRE(run.data.num_eval_windows(Split::val, 8) > 64);
  const double first_batch = run.trainer.evaluate(Split::val, 32);
  int asked = 0;
  run.trainer.should_stop = [&] { return ++asked >= 1; };
  CHECK(run.trainer.evaluate(Split::val, 64) == first_batch);  // stopped after the first batch of 32
  CHECK(asked == 1);
}

TEST_CASE("set_options changes the schedule and decay, never the data a run reads", "[model_io][trainer]") {
  TinyRun run;
  TrainOptions changed = run.options;
  changed.lr = 0.5;
  changed.steps = 20;
  run.trainer.set_options(changed);
  CHECK(run.trainer.options.lr == 0.5);
  changed.batch = 4;
  SEQGEN_THROWS_WITH(run.trainer.set_options(changed), ConfigError, "batch, seq_len and seed cannot change");
  changed = run.options;
  changed.lr = -1;
  SEQGEN_THROWS_WITH(run.trainer.set_options(changed), ConfigError, "lr > 0");
}

// Checkpoints written by main at 931ec78 (2026-11-30), before the redesign, by
//   train --data <the text below> --channels 16 --layers 1 --heads 2 -T 16 -B 4 --steps 5 ...
//   train ... --model lstm --embedding 8 --channels 16 --layers 2 ...
// must load and resume after it: the file format and the parameter names did not change.
TEST_CASE("checkpoints written before the redesign load, generate and resume", "[model_io][trainer]") {
  std::string t;
  for (int i = 0; i < 40; ++i) t += "Sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!\n";
  const auto check_fixture = [&](auto type, const std::string& file) {
    using Model = typename decltype(type)::type;
    INFO(file);
    const CheckpointReader r = CheckpointReader::load(std::string(SEQGEN_TEST_DATA_DIR) + "/" + file);
    const Model model = load_model<Model>(r);
    const Tokenizer tok = load_tokenizer(r, model.config.vocab_size);
    CHECK(tok.vocab_size() == Tokenizer::characters(t).vocab_size());
    Rng rng(1);
    SamplingOptions greedy;
    greedy.temperature = 0;
    CHECK(generate_text(model, tok, "Sphinx", 8, greedy, rng).size() >= 8);
    const TokenDataset data = TokenDataset::from_text(t, tok, r.get_double("data.val_fraction"));
    auto trainer = Trainer<Model>::load(r, data);
    CHECK(trainer.step_count() == 5);
    CHECK(std::isfinite(trainer.step()));
    CHECK(trainer.step_count() == 6);
  };
  check_fixture(ModelType<Gpt<float>>{}, "gpt_931ec78.ckpt");
  check_fixture(ModelType<LstmLm<float>>{}, "lstm_931ec78.ckpt");
}

}  // namespace test_model_io
