// generate: writes text with a model trained by `train`, streaming it as it is produced.
//
//   ./generate --checkpoint model.ckpt --prompt "Once upon a time" --tokens 200 --temperature 0.8 --top-p 0.95
//   ./generate --checkpoint model.ckpt --samples 4 --tokens 100 --stop $'\n\n'
//
// Speed goes to stderr as llama.cpp reports it: prompt processing and generation, in tokens/s.
// Exit status: 0 on success, 1 on bad input (a missing or corrupted checkpoint, a prompt character
// absent from the vocabulary, an option out of range), with the reason on stderr; 2 when the
// command line does not parse (docs/reliability.md).
#include <CLI/CLI.hpp>
#include <seqgen/seqgen.hpp>

#include <sys/stat.h>

#include <cstdio>

namespace {

constexpr int kExitError = 1, kExitUsage = 2;

// An input file must be a regular file: opening a FIFO would block forever, a device never ends.
// Missing files and folders are left to the readers, whose messages say so.
void require_regular_file(const std::string& path, const char* what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return;
  seqgen::check<seqgen::IoError>(S_ISREG(st.st_mode), what, " '", path,
                                 "' is not a regular file (a FIFO, socket or device?)");
}

struct Args {
  std::string checkpoint, prompt, prompt_file;
  seqgen::Index tokens = 200, samples = 1;
  seqgen::SamplingOptions sampling;
  std::uint64_t seed = 1;
  int threads = 0;
};

template <typename Model>
int generate(const seqgen::CheckpointReader& ckpt, const Args& args) {
  using namespace seqgen;
  const Model model = load_model<Model>(ckpt, args.checkpoint);
  const Tokenizer tokenizer = Tokenizer::from_bytes(ckpt.get_bytes("tokenizer"));
  tokenizer.encode(args.prompt);  // an unknown character is reported before any output
  Rng rng(args.seed);
  GenerationStats stats;
  const bool stream = args.samples == 1;
  // fwrite, not fputs: a byte-level model can write NUL bytes.
  auto print = [](const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); };
  if (stream) print(args.prompt);
  const auto texts = generate_samples(model, tokenizer, args.prompt, args.samples, args.tokens, args.sampling, rng,
                                      [&](Index, const std::string& piece) {
                                        if (!stream) return;
                                        print(piece);
                                        std::fflush(stdout);
                                      },
                                      &stats);
  if (stream) {
    std::printf("\n");
  } else {
    for (std::size_t b = 0; b < texts.size(); ++b) {
      std::printf("--- sample %zu ---\n", b + 1);
      print(args.prompt + texts[b] + "\n");
    }
  }
  std::fflush(stdout);
  std::fprintf(stderr, "generate: prompt %lld tokens in %.3f s (%.1f tokens/s), generation %lld tokens in %.3f s (%.1f tokens/s)\n",
               (long long)stats.prompt_tokens, stats.prompt_seconds,
               stats.prompt_seconds > 0 ? double(stats.prompt_tokens) / stats.prompt_seconds : 0.0,
               (long long)stats.generated_tokens, stats.generate_seconds,
               stats.generate_seconds > 0 ? double(stats.generated_tokens) / stats.generate_seconds : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seqgen;
  Args args;
  SamplingOptions& s = args.sampling;
  CLI::App app{"Generate text with a seqgen checkpoint"};
  app.add_option("--checkpoint,-m", args.checkpoint, "Checkpoint written by train")->required();
  auto* prompt = app.add_option("--prompt,-p", args.prompt, "Text to continue (default: none)");
  app.add_option("--prompt-file", args.prompt_file, "Read the prompt from a file")->excludes(prompt);
  app.add_option("--tokens,-n", args.tokens, "Tokens to generate per sample");
  app.add_option("--samples", args.samples, "Independent samples, decoded together as a batch");
  app.add_option("--temperature", s.temperature, "Sampling temperature (0: greedy)");
  app.add_option("--top-k", s.top_k, "Keep the k most likely tokens (0: off)");
  app.add_option("--top-p", s.top_p, "Nucleus: keep the smallest set with this much probability (1: off)");
  app.add_option("--min-p", s.min_p, "Drop tokens below min-p times the top probability (0: off)");
  app.add_option("--repeat-penalty", s.repeat_penalty, "Penalty for tokens seen in the last n (1: off)");
  app.add_option("--repeat-last-n", s.repeat_last_n, "Window of the repetition penalty (-1: everything)");
  app.add_option("--stop", s.stop, "Stop when this text appears (repeatable)");
  app.add_option("--seed", args.seed, "Random seed");
  app.add_option("--threads", args.threads, "Threads (default: all cores)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;  // --help is a success; every other parse error is usage
  }
  try {
    check<ConfigError>(args.tokens >= 0, "--tokens must be >= 0, got ", args.tokens);
    check<ConfigError>(args.samples > 0 && args.samples <= 4096, "--samples must be in [1, 4096], got ", args.samples);
    check<ConfigError>(args.threads >= 0 && args.threads <= 4096, "--threads must be in [0, 4096] (0: all cores), got ",
                       args.threads);
    args.sampling.validate();
    if (args.threads > 0) set_num_threads(args.threads);
    if (!args.prompt_file.empty()) {
      require_regular_file(args.prompt_file, "--prompt-file");
      args.prompt = read_text_file(args.prompt_file);
    }
    require_regular_file(args.checkpoint, "--checkpoint");
    const CheckpointReader ckpt = CheckpointReader::load(args.checkpoint);
    const std::string kind = checkpoint_model_kind(ckpt);
    if (kind == "gpt") return generate<Gpt<float>>(ckpt, args);
    if (kind == "rnn") return generate<RnnLm<float>>(ckpt, args);
    if (kind == "lstm") return generate<LstmLm<float>>(ckpt, args);
    if (kind == "gru") return generate<GruLm<float>>(ckpt, args);
    throw FormatError("checkpoint '" + args.checkpoint + "' holds an unknown model kind '" + kind + "'");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return kExitError;
  }
}
