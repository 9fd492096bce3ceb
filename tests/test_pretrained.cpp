// A trained model in a program of its own (generate/pretrained.hpp): the export keeps exactly the
// weights a checkpoint holds (float32) or rounds each to the nearest float16, loads through the
// same call as a checkpoint, and generates what the checkpoint generates; the prompt policy of
// generate_text.hpp for characters outside the vocabulary.
#include <seqgen/generate/pretrained.hpp>
#include <seqgen/train/trainer.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "test_util.hpp"

namespace test_pretrained {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

const char* kText = "the quick brown fox jumps over the lazy dog; the lazy dog sleeps by the river.\n";

std::string text(int repeats) {
  std::string t;
  for (int i = 0; i < repeats; ++i) t += kText;
  return t;
}

std::string temp_path(const std::string& stem) {
  return (std::filesystem::temp_directory_path() / (stem + "_" + std::to_string(::getpid()))).string();
}

// A trainer of Model after a few steps on kText, saved to a checkpoint: the weights are those of
// a real run, not of the initialiser.
template <typename Model>
struct TrainedRun {
  std::string text_ = text(30);
  Tokenizer tok = Tokenizer::characters(text_);
  TokenDataset data = TokenDataset::from_text(text_, tok, 0.2);
  std::string checkpoint = temp_path("pretrained_" + Model::kind() + ".ckpt");

  explicit TrainedRun(const decltype(Model::config)& config) {
    TrainOptions o;
    o.batch = 2;
    o.seq_len = 8;
    o.steps = 5;
    o.warmup = 1;
    o.lr = 1e-2;
    Rng rng(1);
    Trainer<Model> trainer(Model(config, rng), tok, data, o);
    for (int i = 0; i < 5; ++i) trainer.step();
    trainer.save(checkpoint);
  }
  ~TrainedRun() { std::filesystem::remove(checkpoint); }
};

GptConfig gpt_config(Index vocab) {
  GptConfig c;
  c.vocab_size = vocab;
  c.context = 16;
  c.channels = 16;
  c.layers = 2;
  c.heads = 2;
  return c;
}
RecurrentConfig lstm_config(Index vocab) {
  RecurrentConfig c;
  c.cell = CellKind::lstm;
  c.vocab_size = vocab;
  c.embedding = 8;
  c.hidden = 16;
  c.layers = 2;
  return c;
}

// The logits (V, 1) after the model has read `prompt`.
template <typename Model>
Mat<float> logits_after(const Model& model, const Tokenizer& tok, const std::string& prompt) {
  auto decoder = make_decoder(model, 1);
  return decoder.prefill({tok.encode(prompt)});
}

template <typename Model>
std::vector<Mat<float>> weights_of(const Model& model) {
  std::vector<Mat<float>> out;
  const_cast<Model&>(model).for_each_param([&](auto& p) { out.push_back(p.value); });
  return out;
}

template <typename Model>
void check_export_round_trip(const decltype(Model::config)& config) {
  const std::string bin = temp_path("pretrained.bin"), half = temp_path("pretrained16.bin");
  TrainedRun<Model> run(config);
  export_model(run.checkpoint, bin);
  export_model(run.checkpoint, half, WeightPrecision::float16);
  const PretrainedModel from_ckpt = PretrainedModel::load(run.checkpoint);
  const PretrainedModel from_bin = PretrainedModel::load(bin);
  const PretrainedModel from_half = PretrainedModel::load(half);
  CHECK(from_ckpt.kind() == Model::kind());
  CHECK(!from_ckpt.exported());
  CHECK(from_bin.exported());
  CHECK(from_half.stored_precision() == WeightPrecision::float16);
  CHECK(from_bin.num_params() == from_ckpt.num_params());
  CHECK(from_bin.tokenizer().to_bytes() == run.tok.to_bytes());

  // The checkpoint holds the weights, AdamW's two moments and a little more: the float32 export is
  // about a third of it, the float16 one half of that.
  const double ckpt_size = double(std::filesystem::file_size(run.checkpoint));
  const double bin_size = double(std::filesystem::file_size(bin)), half_size = double(std::filesystem::file_size(half));
  const double weight_bytes = 4.0 * double(from_ckpt.num_params());
  CHECK(bin_size < weight_bytes * 1.25);
  CHECK(ckpt_size > weight_bytes * 3);
  CHECK(half_size < bin_size * 0.6);

  // float32: the same bits, hence the same logits.
  const auto& m_ckpt = from_ckpt.get<Model>();
  const auto& m_bin = from_bin.get<Model>();
  const auto& m_half = from_half.get<Model>();
  const auto w_ckpt = weights_of(m_ckpt), w_bin = weights_of(m_bin), w_half = weights_of(m_half);
  REQUIRE(w_ckpt.size() == w_bin.size());
  for (std::size_t i = 0; i < w_ckpt.size(); ++i) CHECK(w_ckpt[i] == w_bin[i]);
  const std::string prompt = "the lazy dog ";
  const Mat<float> l_ckpt = logits_after(m_ckpt, run.tok, prompt);
  CHECK(logits_after(m_bin, run.tok, prompt) == l_ckpt);

  // float16: each weight within half a unit in the last of 11 significant bits (2^-11 relative,
  // or 2^-25 absolute below float16's smallest normal number 2^-14), and not all of them equal.
  double max_rel = 0;
  for (std::size_t i = 0; i < w_ckpt.size(); ++i)
    for (Index k = 0; k < w_ckpt[i].size(); ++k) {
      const double w = w_ckpt[i].data()[k], h = w_half[i].data()[k];
      const double bound = std::max(std::abs(w) * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
      CHECK(std::abs(h - w) <= bound);
      if (std::abs(w) >= std::ldexp(1.0, -14)) max_rel = std::max(max_rel, std::abs(h - w) / std::abs(w));
    }
  CHECK(max_rel > std::ldexp(1.0, -14));  // the rounding did happen
  // What that does to the logits of these small models (logits of order 1): measured 1.3e-4 for
  // the GPT and 4.3e-5 for the LSTM; the bound leaves room for other compilers.
  const Mat<float> l_half = logits_after(m_half, run.tok, prompt);
  const double max_logit_diff = (l_half - l_ckpt).cwiseAbs().maxCoeff();
  CHECK(max_logit_diff < 1e-3);
  CHECK(max_logit_diff > 0);

  // One call generates what the model generates through generate_text, from either file.
  SamplingOptions sampling;
  sampling.temperature = 0.8;
  Rng rng_a(7), rng_b(7), rng_c(7);
  const std::string a = from_bin.generate(prompt, 30, sampling, rng_a);
  const std::string b = from_ckpt.generate(prompt, 30, sampling, rng_b);
  const std::string c = generate_text(m_ckpt, run.tok, prompt, 30, sampling, rng_c);
  CHECK(utf8::count_characters(a) == 30);
  CHECK(a == b);
  CHECK(a == c);
  std::filesystem::remove(bin);
  std::filesystem::remove(half);
}

}  // namespace

TEST_CASE("An exported GPT keeps the checkpoint's weights and logits; float16 within 2^-11", "[pretrained]") {
  check_export_round_trip<Gpt<float>>(gpt_config(Tokenizer::characters(kText).vocab_size()));
}

TEST_CASE("An exported LSTM keeps the checkpoint's weights and logits; float16 within 2^-11", "[pretrained]") {
  check_export_round_trip<LstmLm<float>>(lstm_config(Tokenizer::characters(kText).vocab_size()));
}

TEST_CASE("float16 export: exact values of known weights, range and damaged blobs", "[pretrained]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  Rng rng(2);
  Gpt<float> model(gpt_config(tok.vocab_size()), rng);
  float* first = nullptr;
  model.for_each_param([&](auto& p) {
    if (!first) first = p.value.data();
  });
  // 1/3 rounds to 0x3555 = 1365/4096; 2^-24 is float16's smallest subnormal; 65504 its largest.
  first[0] = 1.0f / 3.0f;
  first[1] = std::ldexp(1.0f, -24);
  first[2] = -65504.0f;
  first[3] = std::ldexp(1.0f, -26);  // below half the smallest subnormal: rounds to zero
  const std::string path = temp_path("pretrained_values.bin");
  export_model(model, tok, path, WeightPrecision::float16);
  const PretrainedModel loaded = PretrainedModel::load(path);
  float* back = nullptr;
  const_cast<Gpt<float>&>(loaded.get<Gpt<float>>()).for_each_param([&](auto& p) {
    if (!back) back = p.value.data();
  });
  CHECK(back[0] == 1365.0f / 4096.0f);
  CHECK(back[1] == std::ldexp(1.0f, -24));
  CHECK(back[2] == -65504.0f);
  CHECK(back[3] == 0.0f);

  first[0] = 65520.0f;  // rounds to infinity in float16
  SEQGEN_THROWS_WITH(export_model(model, tok, path, WeightPrecision::float16), ConfigError,
                     "beyond float16's range of 65504: export it as float32");
  first[0] = NAN;
  SEQGEN_THROWS_WITH(export_model(model, tok, path), ConfigError, "holds a NaN or infinite value");
  SEQGEN_THROWS_WITH(loaded.get<LstmLm<float>>(), ConfigError, "the model is a 'gpt', not a 'lstm'");

  // Damaged files: each a FormatError naming the file and the entry.
  const CheckpointReader good = CheckpointReader::load(path);
  const auto rewrite = [&](const std::string& skip, const auto& add) {
    CheckpointWriter w;
    for (const std::string& key : good.keys()) {
      if (key == skip) continue;
      if (key.rfind("param16/", 0) == 0 || key == "tokenizer")
        w.put_bytes(key, good.get_bytes(key));
      else if (key.rfind("config.dropout", 0) == 0)
        w.put_double(key, good.get_double(key));
      else if (key == "model.kind" || key == "export.weights")
        w.put_string(key, good.get_string(key));
      else
        w.put_int(key, good.get_int(key));
    }
    add(w);
    return CheckpointReader::from_bytes(w.to_bytes());
  };
  const std::string wte = "param16/wte.weight";
  REQUIRE(good.has(wte));
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite(wte, [](CheckpointWriter&) {})), FormatError,
                     "missing entry 'param16/wte.weight'");
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite(wte, [&](CheckpointWriter& w) {
                       w.put_bytes(wte, good.get_bytes(wte).substr(0, 30));
                     })),
                     FormatError, "float16 tensor 'param16/wte.weight' holds 14 bytes of data, its shape needs");
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite(wte, [&](CheckpointWriter& w) {
                       w.put_bytes(wte, std::string(8, '\0'));
                     })),
                     FormatError, "float16 tensor 'param16/wte.weight' has 8 bytes, fewer than its 16-byte shape");
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite("", [&](CheckpointWriter& w) {
                       w.put_bytes("param16/extra.weight", good.get_bytes(wte));
                     })),
                     FormatError, "unexpected tensor 'param16/extra.weight'");
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite("export.weights", [](CheckpointWriter& w) {
                       w.put_string("export.weights", "bfloat16");
                     })),
                     FormatError, "export.weights is 'bfloat16', expected float32 or float16");
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite("export.version", [](CheckpointWriter& w) {
                       w.put_int("export.version", 2);
                     })),
                     FormatError, "export.version 2 is not one this build reads (1 to 1)");
  // A config claiming more weights than 2 bytes each can fit in the file.
  SEQGEN_THROWS_WITH(PretrainedModel::load(rewrite("config.channels", [](CheckpointWriter& w) {
                       w.put_int("config.channels", 4096);
                     })),
                     FormatError, "parameters, more than its");
  std::filesystem::remove(path);
}

TEST_CASE("Prompt characters outside the vocabulary: skip (default), replace or error", "[pretrained][generate]") {
  const Tokenizer tok = Tokenizer::characters("abc ");  // ids: ' ' 0, a 1, b 2, c 3
  Index unknown = -1;
  CHECK(encode_prompt(tok, "abc", {}, &unknown) == std::vector<Token>{1, 2, 3});
  CHECK(unknown == 0);
  CHECK(encode_prompt(tok, "aé bZc€", {}, &unknown) == std::vector<Token>{1, 0, 2, 3});
  CHECK(unknown == 3);
  PromptOptions replace;
  replace.unknown = UnknownCharacters::replace;  // by " "
  CHECK(encode_prompt(tok, "aé bZc€", replace, &unknown) == std::vector<Token>{1, 0, 0, 2, 0, 3, 0});
  CHECK(unknown == 3);
  replace.replacement = "b";
  CHECK(encode_prompt(tok, "Za", replace) == std::vector<Token>{2, 1});
  PromptOptions error;
  error.unknown = UnknownCharacters::error;
  SEQGEN_THROWS_WITH(encode_prompt(tok, "abZ", error), IndexError,
                     "character 'Z' (U+005A) at character index 2 (byte offset 2) is not in the vocabulary of 4");
  replace.replacement = "Q";
  SEQGEN_THROWS_WITH(encode_prompt(tok, "abc", replace), ConfigError,
                     "the replacement 'Q' is not in the tokenizer's vocabulary either");
  replace.replacement = "ab";
  SEQGEN_THROWS_WITH(encode_prompt(tok, "abc", replace), ConfigError, "the replacement must be one character, got 'ab'");
  // Invalid UTF-8 is not text: an error under every policy.
  SEQGEN_THROWS_WITH(encode_prompt(tok, "a\xC3", {}), FormatError, "invalid UTF-8 at byte offset 1");
  // A byte tokenizer knows every byte.
  CHECK(encode_prompt(Tokenizer::bytes(), "Zé", {}, &unknown) == std::vector<Token>{'Z', 0xC3, 0xA9});
  CHECK(unknown == 0);

  // Through generation: a prompt of unknown characters only starts from the start token, as an
  // empty one does, and the stats count what was skipped.
  Rng init(4);
  RecurrentConfig c = lstm_config(tok.vocab_size());
  const LstmLm<float> model(c, init);
  SamplingOptions greedy;
  greedy.temperature = 0;
  Rng r1(1), r2(1);
  GenerationStats stats;
  const auto skipped = generate_samples(model, tok, "ZZ", 1, 12, greedy, r1, {}, &stats);
  CHECK(stats.unknown_characters == 2);
  CHECK(skipped == generate_samples(model, tok, "", 1, 12, greedy, r2));
  SEQGEN_THROWS_WITH(generate_samples(model, tok, "ZZ", 1, 12, greedy, r1, {}, nullptr, error), IndexError,
                     "character 'Z'");
}

}  // namespace test_pretrained
