// Writing text with a trained model: the prompt, then one sampled token at a time.
//
//   GPT         recomputes the forward pass over the last `context` tokens for every new token
//   RNN family  runs the prompt through once, then steps the recurrent state one token at a time
// A callback receives each new piece of text as it is produced.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "seqgen/data/tokenizer.hpp"
#include "seqgen/generate/sampler.hpp"
#include "seqgen/models/gpt.hpp"
#include "seqgen/models/recurrent_lm.hpp"

namespace seqgen {

using TextCallback = std::function<void(const std::string& piece)>;

template <typename Scalar>
std::string generate_text(Gpt<Scalar>& model, const Tokenizer& tokenizer, const std::string& prompt, Index new_tokens,
                          const SamplingOptions& options, Rng& rng, const TextCallback& on_text = {}) {
  std::vector<Token> tokens = tokenizer.encode(prompt);
  if (tokens.empty()) tokens.push_back(0);  // an empty prompt starts from token 0
  const std::size_t prompt_size = tokens.size();
  Sampler sampler(options);
  typename Gpt<Scalar>::Activations act;
  Mat<Scalar> logits;
  for (Index i = 0; i < new_tokens; ++i) {
    const Index T = std::min<Index>(Index(tokens.size()), model.config.context);
    model.logits(TokenSpan(tokens.data() + tokens.size() - T, T), 1, T, act, logits);
    tokens.push_back(sampler.sample(logits.col(T - 1), rng));
    if (on_text) on_text(tokenizer.decode_token(tokens.back()));
  }
  return tokenizer.decode(TokenSpan(tokens.data() + prompt_size, Index(tokens.size() - prompt_size)));
}

template <typename Scalar, template <typename> class Layer>
std::string generate_text(RecurrentLm<Scalar, Layer>& model, const Tokenizer& tokenizer, const std::string& prompt,
                          Index new_tokens, const SamplingOptions& options, Rng& rng,
                          const TextCallback& on_text = {}) {
  std::vector<Token> tokens = tokenizer.encode(prompt);
  if (tokens.empty()) tokens.push_back(0);
  Sampler sampler(options);
  auto state = model.zero_state(1);
  typename RecurrentLm<Scalar, Layer>::Activations act;
  Mat<Scalar> logits;
  model.logits(tokens, 1, Index(tokens.size()), state, act, logits);
  std::vector<Token> out;
  for (Index i = 0; i < new_tokens; ++i) {
    const Token next = sampler.sample(logits.col(logits.cols() - 1), rng);
    out.push_back(next);
    if (on_text) on_text(tokenizer.decode_token(next));
    model.logits(TokenSpan(&out.back(), 1), 1, 1, state, act, logits);
  }
  return tokenizer.decode(out);
}

}  // namespace seqgen
