// Writing text with a trained model, through the decoding interface of decoder.hpp:
//
//   prefill(prompt)            one batched pass over the prompt (GPT: fills the KV cache)
//   repeat: sample → step      one token at a time, with the sampling controls of sampler.hpp
//
// Several independent samples decode together as a batch. Each piece of text reaches the
// callback as soon as it is safe to print: text that might be the start of a stop string is held
// back until it is known not to be one, and a stop string itself is never printed; a character
// whose bytes come in two tokens (byte and BPE tokenizers) is held back until it is whole
// (data/utf8_stream.hpp).
//
// An empty prompt starts from the newline token when the vocabulary has one (as if the text
// began after a line break), else from token 0; the start token is not part of the output.
//
// A prompt character outside a character tokenizer's vocabulary (a byte tokenizer has none) is
// handled as PromptOptions::unknown says: skipped (the default: the model never saw it, so it
// continues from the rest), replaced by PromptOptions::replacement, or an IndexError naming it.
// GenerationStats::unknown_characters counts them, so a program can tell its user.
#pragma once

#include <chrono>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "seqgen/data/tokenizer.hpp"
#include "seqgen/data/utf8.hpp"
#include "seqgen/data/utf8_stream.hpp"
#include "seqgen/generate/decoder.hpp"
#include "seqgen/generate/sampler.hpp"
#include "seqgen/generate/stop_strings.hpp"

namespace seqgen {

// Receives (sample index, text) as text is produced.
using TextCallback = std::function<void(Index sample, const std::string& piece)>;

// What to do with a prompt character the tokenizer does not know.
enum class UnknownCharacters { skip, replace, error };

struct PromptOptions {
  UnknownCharacters unknown = UnknownCharacters::skip;
  std::string replacement = " ";  // one character of the vocabulary, for UnknownCharacters::replace
};

struct GenerationStats {
  Index unknown_characters = 0;  // prompt characters outside the vocabulary (skipped or replaced)
  Index prompt_tokens = 0;       // over all samples
  double prompt_seconds = 0;     // prefill
  Index generated_tokens = 0;    // over all samples
  double generate_seconds = 0;
};

namespace detail {
// How many of the latest tokens a model's next prediction can depend on.
template <typename Scalar>
Index visible_context(const Gpt<Scalar>& model) {
  return model.config.context;
}
template <typename Model>
Index visible_context(const Model&) {
  return std::numeric_limits<Index>::max();
}
}  // namespace detail

// The token an empty prompt starts from: the newline when the vocabulary has it, else 0.
inline Token start_token(const Tokenizer& tokenizer) {
  const Index V = tokenizer.vocab_size();
  for (Index id = 0; id < V; ++id)
    if (tokenizer.decode_token(Token(id)) == "\n") return Token(id);
  return 0;
}

// The tokens of `prompt` under `policy`; `unknown` (if given) receives the number of characters
// outside the vocabulary. Invalid UTF-8 stays a FormatError whatever the policy: it is not text.
inline std::vector<Token> encode_prompt(const Tokenizer& tokenizer, std::string_view prompt,
                                        const PromptOptions& policy = {}, Index* unknown = nullptr) {
  if (unknown) *unknown = 0;
  std::vector<Token> replacement;
  if (policy.unknown == UnknownCharacters::replace) {
    check<ConfigError>(utf8::count_characters(policy.replacement) == 1,
                       "PromptOptions: the replacement must be one character, got '", policy.replacement, "'");
    try {
      replacement = tokenizer.encode(policy.replacement);
    } catch (const IndexError&) {
      throw ConfigError("PromptOptions: the replacement '" + policy.replacement +
                        "' is not in the tokenizer's vocabulary either");
    }
  }
  // Only a character tokenizer has characters it cannot encode (IndexError); then, and only when
  // the policy allows it, the prompt is encoded again one character at a time.
  try {
    return tokenizer.encode(prompt);
  } catch (const IndexError&) {
    if (policy.unknown == UnknownCharacters::error || tokenizer.kind() != Tokenizer::Kind::characters) throw;
  }
  std::vector<Token> out, one;
  for (std::size_t pos = 0; pos < prompt.size();) {
    const std::size_t first = pos;
    utf8::decode_one(prompt, pos, "encode_prompt");
    try {
      tokenizer.encode(prompt.substr(first, pos - first), one);
    } catch (const IndexError&) {
      one = replacement;  // empty when skipping
      if (unknown) ++*unknown;
    }
    out.insert(out.end(), one.begin(), one.end());
  }
  return out;
}

// Returns the `samples` continuations of `prompt`, each at most `new_tokens` tokens long (shorter
// when a stop string ends it).
template <typename Model>
std::vector<std::string> generate_samples(const Model& model, const Tokenizer& tokenizer, const std::string& prompt,
                                          Index samples, Index new_tokens, const SamplingOptions& options, Rng& rng,
                                          const TextCallback& on_text = {}, GenerationStats* stats = nullptr,
                                          const PromptOptions& prompt_options = {}) {
  using Clock = std::chrono::steady_clock;
  check<ConfigError>(samples > 0, "generate: the number of samples must be positive, got ", samples);
  check<ConfigError>(new_tokens >= 0, "generate: the number of new tokens must be >= 0, got ", new_tokens);
  options.validate();
  Index unknown = 0;
  std::vector<Token> start = encode_prompt(tokenizer, prompt, prompt_options, &unknown);
  if (start.empty()) start.push_back(start_token(tokenizer));
  // A GPT sees only its last `context` tokens: the rest is not copied into every sample's history
  // (a repetition penalty over "all" tokens then looks at what the model sees, as in llama.cpp).
  const Index visible = detail::visible_context(model);
  if (Index(start.size()) > visible) start.erase(start.begin(), start.end() - visible);

  auto decoder = make_decoder(model, samples);
  std::vector<Sampler> samplers(samples, Sampler(options));
  std::vector<StopStrings> stops(samples, StopStrings(options.stop));
  std::vector<Utf8Stream> whole(samples);  // characters split over tokens wait here, before the stop strings
  std::vector<std::vector<Token>> history(samples, start);  // for the repetition penalty
  std::vector<Token> next(samples);
  std::vector<bool> done(samples, false);

  auto t0 = Clock::now();
  const auto* logits = &decoder.prefill(history);
  const double prompt_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<Index> prefilled(samples);
  for (Index b = 0; b < samples; ++b) prefilled[b] = decoder.position(b);
  t0 = Clock::now();
  Index generated = 0, active = samples;
  for (Index i = 0; i < new_tokens && active > 0; ++i) {
    for (Index b = 0; b < samples; ++b) {
      if (done[b]) {
        next[b] = history[b].back();  // keeps the batch shape; its output is ignored
        continue;
      }
      next[b] = samplers[b].sample(logits->col(b), rng, history[b]);
      history[b].push_back(next[b]);
      ++generated;
      const bool stopped = stops[b].feed(whole[b].feed(tokenizer.decode_token(next[b])));
      if (on_text) on_text(b, std::string(stops[b].take()));
      if (stopped) {
        done[b] = true;
        --active;
      }
    }
    if (active > 0 && i + 1 < new_tokens) logits = &decoder.step(next);
  }
  std::vector<std::string> out;
  for (Index b = 0; b < samples; ++b) {
    stops[b].feed(whole[b].flush());
    const std::string_view tail = stops[b].flush();
    if (on_text && !tail.empty()) on_text(b, std::string(tail));
    out.push_back(stops[b].text());
  }
  if (stats) {
    stats->unknown_characters = unknown;
    // What the prefill read: a GPT keeps only the last `context` tokens of a long prompt.
    stats->prompt_tokens = 0;
    for (Index b = 0; b < samples; ++b) stats->prompt_tokens += std::min<Index>(Index(start.size()), prefilled[b]);
    stats->prompt_seconds = prompt_seconds;
    stats->generated_tokens = generated;
    stats->generate_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return out;
}

// One sample; `on_text` receives each piece as it is produced.
template <typename Model>
std::string generate_text(const Model& model, const Tokenizer& tokenizer, const std::string& prompt, Index new_tokens,
                          const SamplingOptions& options, Rng& rng,
                          const std::function<void(const std::string&)>& on_text = {},
                          const PromptOptions& prompt_options = {}) {
  TextCallback each;
  if (on_text) each = [&](Index, const std::string& piece) { on_text(piece); };
  return generate_samples(model, tokenizer, prompt, 1, new_tokens, options, rng, each, nullptr, prompt_options).front();
}

}  // namespace seqgen
