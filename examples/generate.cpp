// generate: writes text with a model trained by `train`, streaming it as it is produced. It reads
// a training checkpoint or a model written by `export` (float32 or float16), of any model kind,
// and pretrained GPT-2 files: llm.c's gpt2_124M.bin or Hugging Face's model.safetensors, with
// GPT-2's tokenizer (llm.c's gpt2_tokenizer.bin, or encoder.json + vocab.bpe).
//
//   ./generate --checkpoint model.ckpt --prompt "Once upon a time" --tokens 200 --temperature 0.8 --top-p 0.95
//   ./generate --checkpoint model.bin --samples 4 --tokens 100 --stop $'\n\n'
//   ./generate --model gpt2_124M.bin --tokenizer gpt2_tokenizer.bin --prompt "The meaning of life is"
//   ./generate --model model.safetensors --encoder-json vocab.json --vocab-bpe merges.txt --prompt "Hello"
//
// A prompt character outside the model's vocabulary is skipped by default, with a note on stderr
// (--unknown replace --replacement '?' replaces it, --unknown error refuses the prompt).
//
// Speed goes to stderr as llama.cpp reports it: prompt processing and generation, in tokens/s.
// Exit status: 0 on success, 1 on bad input (a missing or corrupted checkpoint, with --unknown
// error a prompt character absent from the vocabulary, an option out of range), with the reason on stderr; 2 when the
// command line does not parse (docs/reliability.md).
#include "cli_common.hpp"

#include <cstdio>
#include <new>

namespace {

using cli::kExitError;
using cli::kExitUsage;

// What the program is doing, for the message of an allocation that fails anyway.
const char* g_phase = "starting";

struct Args {
  std::string checkpoint, prompt, prompt_file;
  std::int64_t tokens = 200, samples = 1;
  seqgen::SamplingOptions sampling;
  seqgen::PromptOptions prompt_options;
  std::uint64_t seed = 1;
  int threads = 0;
  cli::Gpt2TokenizerFiles gpt2_tokenizer;  // for a GPT-2 file
  seqgen::Index heads = 0;                 // a safetensors file's heads (0: its metadata or GPT-2's)
};

template <typename Model>
int generate(const Model& model, const seqgen::Tokenizer& tokenizer, const Args& args, int threads) {
  using namespace seqgen;
  Index unknown = 0;  // an unknown character is reported here under --unknown error
  const Index prompt_tokens = Index(encode_prompt(tokenizer, args.prompt, args.prompt_options, &unknown).size());
  if (unknown > 0)
    std::fprintf(stderr, "generate: %lld prompt character%s not in the model's vocabulary of %lld %s\n",
                 (long long)unknown, unknown == 1 ? " is" : "s are", (long long)tokenizer.vocab_size(),
                 args.prompt_options.unknown == UnknownCharacters::skip
                     ? "characters: skipped (--unknown)"
                     : ("characters: replaced by '" + args.prompt_options.replacement + "' (--unknown)").c_str());
  require_memory(generation_bytes(model.config, args.samples, prompt_tokens, args.tokens, threads),
                 "generating --samples " + std::to_string(args.samples) + " of --tokens " + std::to_string(args.tokens) +
                     " after a prompt of " + std::to_string(prompt_tokens) + " tokens",
                 "lower --samples or --tokens, or shorten the prompt");
  g_phase = "generating";
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
                                      &stats, args.prompt_options);
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
  using cli::add_number;
  Args args;
  SamplingOptions& s = args.sampling;
  CLI::App app{"Generate text with a seqgen checkpoint"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  app.add_option("--checkpoint,-m,--model", args.checkpoint,
                 "Checkpoint written by train, a model written by export, or a GPT-2 file (llm.c's .bin, "
                 "model.safetensors)")
      ->required();
  cli::add_gpt2_tokenizer_options(app, args.gpt2_tokenizer, "--tokenizer,--llmc-tokenizer");
  add_number(app, "--heads", args.heads, Index(0), Index(1) << 24,
             "A safetensors file's attention heads (0: its metadata, else GPT-2's count for its width)");
  auto* prompt = app.add_option("--prompt,-p", args.prompt, "Text to continue (default: none)");
  app.add_option("--prompt-file", args.prompt_file, "Read the prompt from a file")->excludes(prompt);
  add_number(app, "--tokens,-n", args.tokens, std::int64_t(0), std::int64_t(1) << 32, "Tokens to generate per sample");
  add_number(app, "--samples", args.samples, std::int64_t(1), std::int64_t(4096),
             "Independent samples, decoded together as a batch");
  add_number(app, "--temperature", s.temperature, 0.0, 1e6, "Sampling temperature (0: greedy)");
  add_number(app, "--top-k", s.top_k, Index(0), Index(1) << 31, "Keep the k most likely tokens (0: off)");
  add_number(app, "--top-p", s.top_p, std::numeric_limits<double>::min(), 1.0,
             "Nucleus: keep the smallest set with this much probability (1: off)", "(0, 1]");
  add_number(app, "--min-p", s.min_p, 0.0, 1.0, "Drop tokens below min-p times the top probability (0: off)");
  add_number(app, "--repeat-penalty", s.repeat_penalty, 1e-3, 1e3, "Penalty for tokens seen in the last n (1: off)");
  add_number(app, "--repeat-last-n", s.repeat_last_n, Index(-1), Index(1) << 31,
             "Window of the repetition penalty (-1: everything the model sees)");
  app.add_option("--stop", s.stop, "Stop when this text appears (repeatable)");
  std::string unknown = "skip";
  app.add_option("--unknown", unknown,
                 "A prompt character outside the vocabulary: skip it, replace it (--replacement), or error")
      ->check(CLI::IsMember({"skip", "replace", "error"}));
  app.add_option("--replacement", args.prompt_options.replacement,
                 "The character that replaces an unknown one with --unknown replace");
  add_number(app, "--seed", args.seed, std::uint64_t(0), std::numeric_limits<std::uint64_t>::max(), "Random seed");
  add_number(app, "--threads", args.threads, 0, 4096, "Threads (0: every usable CPU; more than that are capped)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;  // --help is a success; every other parse error is usage
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "generate: error: %s\nRun with --help for more information.\n", e.what());
    return kExitUsage;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return kExitError;
  }
  args.prompt_options.unknown = unknown == "error"     ? UnknownCharacters::error
                                : unknown == "replace" ? UnknownCharacters::replace
                                                       : UnknownCharacters::skip;
  try {
    args.sampling.validate();
    const int threads = cli::configure_threads(args.threads, "generate");
    if (!args.prompt_file.empty()) {
      cli::require_regular_file(args.prompt_file, "--prompt-file");
      const double size = cli::file_size(args.prompt_file);
      if (size > 0) require_memory(text_bytes(size), "--prompt-file '" + args.prompt_file + "' (" + format_bytes(size) + ")");
      g_phase = "reading --prompt-file";
      args.prompt = read_text_file(args.prompt_file);
    }
    cli::require_regular_file(args.checkpoint, "--checkpoint");
    if (!cli::looks_like_checkpoint(args.checkpoint) && looks_like_gpt2_file(args.checkpoint)) {
      g_phase = "loading the GPT-2 model";
      const Tokenizer tokenizer = cli::load_gpt2_tokenizer(args.gpt2_tokenizer, args.checkpoint);
      const Gpt<float> model = cli::load_gpt2_model(args.checkpoint, args.heads, tokenizer);
      return generate(model, tokenizer, args, threads);
    }
    check<ConfigError>(!args.gpt2_tokenizer.given() && args.heads == 0, "--tokenizer, --encoder-json, --vocab-bpe "
                       "and --heads apply to GPT-2 files; '", args.checkpoint, "' is a seqgen checkpoint, which "
                       "carries its tokenizer");
    g_phase = "reading the checkpoint";
    const CheckpointReader ckpt = CheckpointReader::load(args.checkpoint);
    return visit_model_kind(checkpoint_model_kind(ckpt), [&](auto type) {
      using Model = typename decltype(type)::type;
      g_phase = "loading the model";
      const Model model = load_model<Model>(ckpt);
      const Tokenizer tokenizer = load_tokenizer(ckpt, model.config.vocab_size);
      return generate(model, tokenizer, args, threads);
    });
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "generate: error: out of memory while %s (an allocation failed): lower --samples or "
                 "--tokens, or free memory\n", g_phase);
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return kExitError;
  }
}
