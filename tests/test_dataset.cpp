#include <seqgen/data/dataset.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace test_dataset {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path = fs::temp_directory_path() / ("seqgen_test_dataset_" + std::to_string(stamp));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& contents) const {
    const fs::path file = path / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file.string();
  }
};

// 26 * 40 = 1040 letters "abc...zabc...", so character i of the text is 'a' + i % 26.
std::string alphabet_text(int repeats = 40) {
  std::string text;
  for (int r = 0; r < repeats; ++r)
    for (char c = 'a'; c <= 'z'; ++c) text += c;
  return text;
}

// ids 0, 1, ..., n - 1: token i of the train split is i itself, so positions can be read off.
TokenDataset identity_dataset(Index n, double val_fraction) {
  std::vector<Token> ids(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = static_cast<Token>(i);
  return TokenDataset::from_tokens(ids, n, val_fraction);
}

}  // namespace

TEST_CASE("TokenDataset: the last val_fraction of the tokens is validation", "[dataset]") {
  const std::string text = "0123456789";
  const Tokenizer tok = Tokenizer::bytes();
  const TokenDataset data = TokenDataset::from_text(text + text + text + text + text, tok);  // 50 tokens
  REQUIRE(data.size() == 50);
  REQUIRE(data.vocab_size() == 256);
  REQUIRE(data.size(Split::train) == 45);
  REQUIRE(data.size(Split::val) == 5);
  for (Index i = 0; i < 45; ++i) REQUIRE(data.at(Split::train, i) == '0' + i % 10);
  for (Index i = 0; i < 5; ++i) REQUIRE(data.at(Split::val, i) == '5' + i);

  REQUIRE(TokenDataset::from_text(text, tok, 0.0).size(Split::val) == 0);
  REQUIRE(TokenDataset::from_text(text, tok, 0.25).size(Split::val) == 2);  // ⌊2.5⌋
  REQUIRE(TokenDataset::from_text(text, tok, 0.3).size(Split::val) == 3);
  REQUIRE(identity_dataset(90, 0.7).size(Split::val) == 63);  // 90 * 0.7 is 62.99999999999999 in double
  REQUIRE(identity_dataset(180, 0.35).size(Split::val) == 63);

  // A character tokenizer stores one token per character, not per byte.
  const std::string chinese = "「生成模型的奇妙之旅:从RNN到GPT3」";
  const Tokenizer chars = Tokenizer::characters(chinese);
  const TokenDataset zh = TokenDataset::from_text(chinese, chars, 0.2);
  REQUIRE(zh.size() == 21);
  REQUIRE(zh.size(Split::val) == 4);  // ⌊4.2⌋: "PT3」"
  REQUIRE(chars.decode_token(zh.at(Split::val, 0)) == "P");
  REQUIRE(chars.decode_token(zh.at(Split::train, 1)) == "生");
  SEQGEN_THROWS_WITH(zh.at(Split::val, 4), IndexError, "index 4 is out of range for the validation split of 4 tokens");
  SEQGEN_THROWS_WITH(zh.at(Split::train, -1), IndexError, "index -1");
}

TEST_CASE("TokenDataset: sampled windows are shifted text at the documented random starts", "[dataset]") {
  const std::string text = alphabet_text();
  const Tokenizer tok = Tokenizer::characters(text);
  const TokenDataset data = TokenDataset::from_text(text, tok, 0.1);  // 936 train, 104 val
  const Index B = 5, T = 16;
  for (Split split : {Split::train, Split::val}) {
    const Index n = data.size(split), offset = split == Split::train ? 0 : data.size(Split::train);
    Rng rng(42), replay(42);
    std::vector<Token> inputs, targets;
    data.sample_windows(split, B, T, rng, inputs, targets);
    REQUIRE(inputs.size() == static_cast<std::size_t>(B * T));
    REQUIRE(targets.size() == static_cast<std::size_t>(B * T));
    for (Index b = 0; b < B; ++b) {
      const auto start = static_cast<Index>(replay.uniform_int(static_cast<std::uint64_t>(n - T)));
      for (Index t = 0; t < T; ++t) {
        const auto i = static_cast<std::size_t>(b * T + t);
        REQUIRE(inputs[i] == text[static_cast<std::size_t>(offset + start + t)] - 'a');
        REQUIRE(targets[i] == text[static_cast<std::size_t>(offset + start + t + 1)] - 'a');
        if (t + 1 < T) REQUIRE(targets[i] == inputs[i + 1]);
        REQUIRE((inputs[i] >= 0 && inputs[i] < tok.vocab_size()));
      }
    }
    REQUIRE(rng.state() == replay.state());  // exactly B draws
  }
}

TEST_CASE("TokenDataset: same seed, same batches; another seed, other batches; no reallocation", "[dataset]") {
  const TokenDataset data = identity_dataset(5000, 0.1);
  std::vector<Token> in1, tg1, in2, tg2, in3, tg3;
  Rng a(7), b(7), c(8);
  data.sample_windows(Split::train, 8, 32, a, in1, tg1);
  data.sample_windows(Split::train, 8, 32, b, in2, tg2);
  data.sample_windows(Split::train, 8, 32, c, in3, tg3);
  REQUIRE(in1 == in2);
  REQUIRE(tg1 == tg2);
  REQUIRE(in1 != in3);

  const Token* inputs_data = in1.data();
  const Token* targets_data = tg1.data();
  data.sample_windows(Split::train, 8, 32, a, in1, tg1);
  REQUIRE(in1.data() == inputs_data);
  REQUIRE(tg1.data() == targets_data);
  REQUIRE(in1 != in2);  // the generator moved on
  // A window never reaches past the end of its split: the last target is at most token n - 1.
  Rng d(9);
  for (int k = 0; k < 200; ++k) {
    data.sample_windows(Split::train, 4, 100, d, in1, tg1);
    for (std::size_t i = 0; i < tg1.size(); ++i) REQUIRE((tg1[i] == in1[i] + 1 && tg1[i] < 4500));
  }
}

TEST_CASE("TokenDataset: evaluation windows are consecutive and non-overlapping", "[dataset]") {
  const TokenDataset data = identity_dataset(1000, 0.1);  // val = tokens 900..999
  const Index T = 7;
  REQUIRE(data.num_eval_windows(Split::val, T) == 14);  // ⌊99 / 7⌋
  REQUIRE(data.num_eval_windows(Split::train, T) == 128);  // ⌊899 / 7⌋
  std::vector<Token> inputs, targets;
  data.eval_windows(Split::val, 3, 11, T, inputs, targets);  // windows 3..13, the last one
  REQUIRE(inputs.size() == 77);
  for (Index b = 0; b < 11; ++b)
    for (Index t = 0; t < T; ++t) {
      REQUIRE(inputs[static_cast<std::size_t>(b * T + t)] == 900 + (3 + b) * T + t);
      REQUIRE(targets[static_cast<std::size_t>(b * T + t)] == 900 + (3 + b) * T + t + 1);
    }
  data.eval_window(Split::train, 0, T, inputs, targets);
  REQUIRE(inputs == std::vector<Token>{0, 1, 2, 3, 4, 5, 6});
  REQUIRE(targets == std::vector<Token>{1, 2, 3, 4, 5, 6, 7});
  SEQGEN_THROWS_WITH(data.eval_windows(Split::val, 10, 5, T, inputs, targets), IndexError,
                     "windows [10, 15) are out of range, the validation split of 100 tokens has 14 windows of T = 7");
  SEQGEN_THROWS_WITH(data.eval_window(Split::val, -1, T, inputs, targets), IndexError, "out of range");
  SEQGEN_THROWS_WITH(data.num_eval_windows(Split::val, 0), ConfigError, "T must be positive");
  REQUIRE(identity_dataset(10, 0.0).num_eval_windows(Split::val, 3) == 0);
}

TEST_CASE("StreamBatcher: B contiguous streams continue across calls and wrap", "[dataset]") {
  const TokenDataset data = identity_dataset(1003, 0.0);
  const Index B = 4, T = 10;
  StreamBatcher batcher(data, Split::train, B, T);
  REQUIRE(batcher.stream_length() == 250);  // the last 3 tokens are never read
  REQUIRE(batcher.steps_per_epoch() == 24);  // ⌊249 / 10⌋
  std::vector<Token> inputs, targets;
  bool wrapped = false;
  for (int epoch = 0; epoch < 2; ++epoch)
    for (Index step = 0; step < 24; ++step) {
      REQUIRE(batcher.cursor() == step * T);
      batcher.next(inputs, targets, wrapped);
      REQUIRE(wrapped == (step == 0));
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < T; ++t) {
          REQUIRE(inputs[static_cast<std::size_t>(b * T + t)] == b * 250 + step * T + t);
          REQUIRE(targets[static_cast<std::size_t>(b * T + t)] == b * 250 + step * T + t + 1);
        }
    }

  // The same on text, over the validation split: stream b of the split starts at b * L.
  const std::string text = alphabet_text();
  const Tokenizer tok = Tokenizer::characters(text);
  const TokenDataset letters = TokenDataset::from_text(text, tok, 0.25);  // 780 train, 260 val
  StreamBatcher val(letters, Split::val, 3, 5);
  REQUIRE(val.stream_length() == 86);
  for (Index step = 0; step < 3; ++step) {
    val.next(inputs, targets, wrapped);
    for (Index b = 0; b < 3; ++b)
      for (Index t = 0; t < 5; ++t) {
        const auto i = static_cast<std::size_t>(780 + b * 86 + step * 5 + t);
        REQUIRE(tok.decode_token(inputs[static_cast<std::size_t>(b * 5 + t)]) == std::string(1, text[i]));
        REQUIRE(tok.decode_token(targets[static_cast<std::size_t>(b * 5 + t)]) == std::string(1, text[i + 1]));
      }
  }
}

TEST_CASE("StreamBatcher: set_cursor resumes exactly", "[dataset]") {
  const TokenDataset data = identity_dataset(2000, 0.1);
  StreamBatcher first(data, Split::train, 3, 8);
  std::vector<Token> inputs, targets, resumed_inputs, resumed_targets;
  bool wrapped = false, resumed_wrapped = false;
  for (int k = 0; k < 5; ++k) first.next(inputs, targets, wrapped);
  const Index saved = first.cursor();
  REQUIRE(saved == 40);

  StreamBatcher second(data, Split::train, 3, 8);
  second.set_cursor(saved);
  for (int k = 0; k < 100; ++k) {  // 100 > 74 steps per epoch, so this crosses a wrap
    first.next(inputs, targets, wrapped);
    second.next(resumed_inputs, resumed_targets, resumed_wrapped);
    REQUIRE(resumed_inputs == inputs);
    REQUIRE(resumed_targets == targets);
    REQUIRE(resumed_wrapped == wrapped);
    REQUIRE(second.cursor() == first.cursor());
  }
  const Token* reused = inputs.data();
  first.next(inputs, targets, wrapped);
  REQUIRE(inputs.data() == reused);

  SEQGEN_THROWS_WITH(second.set_cursor(592), IndexError,
                     "cursor 592 is out of range, streams of 600 tokens with T = 8 allow 0..591");
  SEQGEN_THROWS_WITH(second.set_cursor(-1), IndexError, "cursor -1 is out of range");
  second.set_cursor(591);
  second.next(inputs, targets, wrapped);
  REQUIRE(inputs[0] == 591);
  REQUIRE(targets[7] == 599);  // the last token of stream 0
  REQUIRE(second.cursor() == 0);
}

TEST_CASE("TokenDataset, StreamBatcher: huge B, T, first and count are clear errors, with no overflow",
          "[dataset][errors]") {
  // Each of these overflowed Index in the check or its message (T + 1, B * (T + 1), first + count,
  // B * T: undefined behaviour) and some then passed the check: first + count wrapped to a negative
  // number, and B * T wrapped to a small one.
  const TokenDataset data = identity_dataset(1000, 0.1);
  const Index max = std::numeric_limits<Index>::max(), limit = Index(1) << 20;
  std::vector<Token> inputs, targets;
  Rng rng(1);
  SEQGEN_THROWS_WITH(data.sample_windows(Split::train, 1, max, rng, inputs, targets), ConfigError,
                     "TokenDataset::sample_windows: T must be in [1, 2^20], got T = 9223372036854775807");
  SEQGEN_THROWS_WITH(data.sample_windows(Split::train, max, 4, rng, inputs, targets), ConfigError,
                     "TokenDataset::sample_windows: B must be in [1, 2^20], got B = 9223372036854775807");
  // (2^62 + 1) · 4 wraps to 4
  SEQGEN_THROWS_WITH(data.sample_windows(Split::train, (Index(1) << 62) + 1, 4, rng, inputs, targets), ConfigError,
                     "B must be in [1, 2^20]");
  SEQGEN_THROWS_WITH(data.sample_windows(Split::train, limit + 1, 4, rng, inputs, targets), ConfigError,
                     "B must be in [1, 2^20], got B = 1048577");
  SEQGEN_THROWS_WITH(data.sample_windows(Split::val, 1, limit, rng, inputs, targets), ConfigError,
                     "the validation split has 100 tokens, a window of T = 1048576 needs at least 1048577");
  REQUIRE(inputs.empty());  // nothing was resized

  SEQGEN_THROWS_WITH(StreamBatcher(data, Split::train, max, max), ConfigError,
                     "StreamBatcher: B must be in [1, 2^20], got B = 9223372036854775807");
  SEQGEN_THROWS_WITH(StreamBatcher(data, Split::train, 3, max), ConfigError,
                     "StreamBatcher: T must be in [1, 2^20], got T = 9223372036854775807");
  SEQGEN_THROWS_WITH(StreamBatcher(data, Split::train, limit, limit), ConfigError,
                     "the train split has 900 tokens, B = 1048576 streams of T + 1 = 1048577 tokens need at least "
                     "1099512676352");

  // windows [max, max + 1) wrapped to a negative end, which passed the check and read far outside
  // the split
  SEQGEN_THROWS_WITH(data.eval_windows(Split::train, max, 1, 10, inputs, targets), IndexError,
                     "TokenDataset::eval_windows: first window 9223372036854775807 is out of range, the train split "
                     "of 900 tokens has 89 windows of T = 10");
  SEQGEN_THROWS_WITH(data.eval_windows(Split::train, 80, max, 10, inputs, targets), ConfigError,
                     "TokenDataset::eval_windows: B must be in [1, 2^20], got B = 9223372036854775807");
  SEQGEN_THROWS_WITH(data.eval_windows(Split::train, 80, limit, 10, inputs, targets), IndexError,
                     "windows [80, 1048656) are out of range");
  SEQGEN_THROWS_WITH(data.eval_windows(Split::train, 1, 1, max, inputs, targets), ConfigError,
                     "T must be in [1, 2^20], got T = 9223372036854775807");
  SEQGEN_THROWS_WITH(data.eval_window(Split::train, max, 10, inputs, targets), IndexError, "out of range");
  REQUIRE(inputs.empty());
  data.eval_windows(Split::train, 80, 9, 10, inputs, targets);  // the last 9 of the 89 windows
  REQUIRE(inputs.size() == 90);
  REQUIRE(targets.back() == 890);
}

TEST_CASE("TokenSpan: no view of a temporary vector (compile-time)", "[dataset]") {
  // A TokenSpan kept from a temporary std::vector would dangle at the end of the statement, so
  // that conversion does not compile; lvalues and (pointer, size) still convert.
  static_assert(!std::is_constructible<TokenSpan, std::vector<Token>&&>::value, "a temporary vector is rejected");
  static_assert(!std::is_convertible<std::vector<Token>, TokenSpan>::value, "a temporary vector is rejected");
  static_assert(!std::is_constructible<TokenSpan, const std::vector<Token>&&>::value, "a const temporary too");
  static_assert(std::is_constructible<TokenSpan, std::vector<Token>&>::value, "an lvalue vector converts");
  static_assert(std::is_convertible<const std::vector<Token>&, TokenSpan>::value, "implicitly");
  static_assert(std::is_constructible<TokenSpan, const Token*, Index>::value, "pointer and size");
  const std::vector<Token> ids{3, 1, 4};
  const TokenSpan span = ids;
  REQUIRE(span.data == ids.data());
  REQUIRE(span.size == 3);
  REQUIRE(span[2] == 4);
}

TEST_CASE("TokenDataset: files, short corpora and bad arguments are clear errors", "[dataset][errors]") {
  TempDir dir;
  const Tokenizer tok = Tokenizer::bytes();
  const std::string text = alphabet_text(2);
  const std::string path = dir.write("corpus.txt", text);
  REQUIRE(read_text_file(path) == text);
  const TokenDataset from_file = TokenDataset::from_file(path, tok, 0.5);
  REQUIRE(from_file.size(Split::val) == 26);
  REQUIRE(from_file.at(Split::val, 25) == 'z');

  const std::string missing = (dir.path / "missing.txt").string();
  SEQGEN_THROWS_WITH(read_text_file(missing), IoError, "'" + missing + "' does not exist");
  SEQGEN_THROWS_WITH(TokenDataset::from_file(missing, tok), IoError, "does not exist");
  SEQGEN_THROWS_WITH(read_text_file(dir.path.string()), IoError, "is a directory, expected a text file");
  SEQGEN_THROWS_WITH(read_text_file(dir.write("empty.txt", "")), FormatError, "is empty");
  SEQGEN_THROWS_WITH(TokenDataset::from_file(dir.write("bad.txt", "ab\xC3"), Tokenizer::characters("ab")),
                     FormatError, "invalid UTF-8 at byte offset 2 (byte 0xC3)");
  SEQGEN_THROWS_WITH(TokenDataset::from_text("abca", Tokenizer::characters("ab")), IndexError,
                     "'c' (U+0063) at character index 2");

  for (double bad : {1.0, -0.1, 1.5, std::nan("")})
    SEQGEN_THROWS_WITH(TokenDataset::from_text(text, tok, bad), ConfigError, "val_fraction must be in [0, 1)");
  SEQGEN_THROWS_WITH(TokenDataset::from_file(missing, tok, 2.0), ConfigError, "val_fraction");
  SEQGEN_THROWS_WITH(TokenDataset::from_text("", tok), ConfigError, "the text is empty");
  const std::vector<Token> ids01{0, 1}, ids051{0, 5, 1};
  SEQGEN_THROWS_WITH(TokenDataset::from_tokens(ids01, 70000), ConfigError,
                     "vocabulary size 70000 is not in [1, 65536]");
  SEQGEN_THROWS_WITH(TokenDataset::from_tokens(ids051, 5), IndexError,
                     "token id 5 at position 1 is out of range for a vocabulary of 5");

  const TokenDataset small = TokenDataset::from_text(text, tok, 0.25);  // 39 train, 13 val
  std::vector<Token> inputs, targets;
  Rng rng(1);
  SEQGEN_THROWS_WITH(small.sample_windows(Split::val, 2, 13, rng, inputs, targets), ConfigError,
                     "the validation split has 13 tokens, a window of T = 13 needs at least 14");
  small.sample_windows(Split::val, 2, 12, rng, inputs, targets);  // exactly enough: the one start 0
  REQUIRE(inputs[0] == text[39]);
  REQUIRE(targets[23] == text[51]);
  SEQGEN_THROWS_WITH(small.sample_windows(Split::train, 0, 4, rng, inputs, targets), ConfigError,
                     "TokenDataset::sample_windows: B must be in [1, 2^20], got B = 0");
  SEQGEN_THROWS_WITH(StreamBatcher(small, Split::train, 4, 9), ConfigError,
                     "the train split has 39 tokens, B = 4 streams of T + 1 = 10 tokens need at least 40");
  REQUIRE(StreamBatcher(small, Split::train, 3, 12).steps_per_epoch() == 1);
  SEQGEN_THROWS_WITH(StreamBatcher(small, Split::val, 1, 0), ConfigError, "StreamBatcher: T must be in [1, 2^20], got T = 0");
}

}  // namespace test_dataset
