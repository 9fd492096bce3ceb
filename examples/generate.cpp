// generate: writes text with a model trained by `train`.
//
//   ./generate --checkpoint model.ckpt --prompt "Once upon a time" --tokens 200 --temperature 0.8
//
// Text streams to stdout as it is produced; speed goes to stderr.
#include <CLI/CLI.hpp>
#include <seqgen/seqgen.hpp>

#include <chrono>
#include <cstdio>

namespace {

struct Args {
  std::string checkpoint, prompt;
  seqgen::Index tokens = 200;
  seqgen::SamplingOptions sampling;
  std::uint64_t seed = 1;
  int threads = 0;
};

template <typename Model>
int generate(const seqgen::CheckpointReader& ckpt, const Args& args) {
  using namespace seqgen;
  Model model = load_model<Model>(ckpt, args.checkpoint);
  const Tokenizer tokenizer = Tokenizer::from_bytes(ckpt.get_bytes("tokenizer"));
  Rng rng(args.seed);
  std::fputs(args.prompt.c_str(), stdout);
  const auto start = std::chrono::steady_clock::now();
  generate_text(model, tokenizer, args.prompt, args.tokens, args.sampling, rng, [](const std::string& piece) {
    std::fputs(piece.c_str(), stdout);
    std::fflush(stdout);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n");
  std::fprintf(stderr, "generate: %lld tokens in %.2f s, %.1f tokens/s\n", (long long)args.tokens, seconds,
               double(args.tokens) / seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seqgen;
  Args args;
  CLI::App app{"Generate text with a seqgen checkpoint"};
  app.add_option("--checkpoint,-m", args.checkpoint, "Checkpoint written by train")->required();
  app.add_option("--prompt,-p", args.prompt, "Text to continue");
  app.add_option("--tokens,-n", args.tokens, "Tokens to generate")->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", args.sampling.temperature, "Sampling temperature (0: greedy)");
  app.add_option("--top-k", args.sampling.top_k, "Keep only the k most likely tokens (0: all)");
  app.add_option("--seed", args.seed, "Random seed");
  app.add_option("--threads", args.threads, "Threads (default: all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (args.threads > 0) set_num_threads(args.threads);
    args.sampling.validate();
    const CheckpointReader ckpt = CheckpointReader::load(args.checkpoint);
    const std::string kind = checkpoint_model_kind(ckpt);
    if (kind == "gpt") return generate<Gpt<float>>(ckpt, args);
    if (kind == "rnn") return generate<RnnLm<float>>(ckpt, args);
    if (kind == "lstm") return generate<LstmLm<float>>(ckpt, args);
    if (kind == "gru") return generate<GruLm<float>>(ckpt, args);
    throw FormatError("checkpoint '" + args.checkpoint + "' holds an unknown model kind '" + kind + "'");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return 1;
  }
}
