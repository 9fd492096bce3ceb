// Target `generate`: a prompt, stop strings and sampling options (NaN, infinite, negative and
// out-of-range values among them) given to generate_samples with a tiny GPT and LSTM, built once
// with fixed weights. The streamed pieces must equal the returned text; no stop string may appear
// in the output; at most `new_tokens` characters.
// Input: [u8 model] [u8 samples] [u8 new tokens] [5 x u8 option choices] [u8 stop count]
//        [stop count x sized8 stop string] [rest: the prompt]
#pragma once

#include <cmath>

#include "../tiny_models.hpp"

namespace seqgen_fuzz {

// A model with fixed weights, built on first use.
template <typename Model, typename Config>
const Model& fixed_model(const Config& config) {
  static const Model model = [&] {
    Rng rng(7);
    return Model(config, rng);
  }();
  return model;
}
inline const Gpt<float>& fixed_gpt() {
  GptConfig c;
  c.vocab_size = fixed_tokenizer().vocab_size();
  c.context = 8;
  c.channels = 8;
  c.layers = 1;
  c.heads = 2;
  return fixed_model<Gpt<float>>(c);
}
inline const LstmLm<float>& fixed_lstm() {
  RecurrentConfig c;
  c.cell = CellKind::lstm;
  c.vocab_size = fixed_tokenizer().vocab_size();
  c.embedding = 4;
  c.hidden = 8;
  c.layers = 1;
  return fixed_model<LstmLm<float>>(c);
}

template <typename Model>
void generate_checked(const Model& model, const Tokenizer& tok, const std::string& prompt, Index samples,
                      Index new_tokens, const SamplingOptions& options) {
  Rng rng(3);
  std::vector<std::string> streamed(std::size_t(std::max<Index>(samples, 0)));
  const std::vector<std::string> out = generate_samples(
      model, tok, prompt, samples, new_tokens, options, rng,
      [&](Index b, const std::string& piece) { streamed.at(std::size_t(b)) += piece; });
  SEQGEN_FUZZ_EXPECT(Index(out.size()) == samples, "one text per sample");
  for (std::size_t b = 0; b < out.size(); ++b) {
    SEQGEN_FUZZ_EXPECT(streamed[b] == out[b], "the streamed pieces differ from the returned text");
    SEQGEN_FUZZ_EXPECT(Index(utf8::count_characters(out[b])) <= new_tokens, "more characters than new tokens");
    for (const std::string& s : options.stop)
      SEQGEN_FUZZ_EXPECT(out[b].find(s) == std::string::npos, "a stop string appears in the output");
  }
}

inline int fuzz_generate(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const unsigned model = in.u8();
  const Index samples = Index(in.u8() % 4);       // 0 must be refused
  const Index new_tokens = Index(in.u8() % 12) - 1;  // -1 must be refused
  static const double temperatures[] = {1.0, 0.0, 0.7, 2.0, 1e-30, 1e30, -1.0, std::nan(""), INFINITY};
  static const double top_ps[] = {1.0, 0.9, 0.5, 1e-9, 0.0, 1.5, std::nan("")};
  static const double min_ps[] = {0.0, 0.05, 0.5, 1.0, -0.1, 2.0, std::nan("")};
  static const double penalties[] = {1.0, 1.3, 0.5, 1e-30, 1e30, 0.0, std::nan(""), INFINITY};
  static const Index last_ns[] = {64, 0, -1, 3, -2};
  SamplingOptions options;
  options.temperature = temperatures[in.u8() % 9];
  options.top_k = Index(in.u8()) - 4;  // a few negative ones
  options.top_p = top_ps[in.u8() % 7];
  options.min_p = min_ps[in.u8() % 7];
  const unsigned penalty = in.u8();
  options.repeat_penalty = penalties[penalty % 8];
  options.repeat_last_n = last_ns[penalty / 8 % 5];
  options.stop.resize(in.u8() % 4);
  for (std::string& s : options.stop) s = std::string(in.sized8());
  const std::string prompt(in.rest());
  try {
    if (model & 1) generate_checked(fixed_lstm(), fixed_tokenizer(), prompt, samples, new_tokens, options);
    else generate_checked(fixed_gpt(), fixed_tokenizer(), prompt, samples, new_tokens, options);
  } catch (const Error&) {
  }
  return 0;
}

inline std::vector<Seed> generate_seeds() {
  // head: model, samples, new tokens + 1, temperature, top_k + 4, top_p, min_p, penalty
  const auto input = [](std::vector<unsigned> head, std::vector<std::string> stops, const std::string& prompt) {
    std::string in;
    for (unsigned v : head) put_u8(in, v);
    put_u8(in, unsigned(stops.size()));
    for (const std::string& s : stops) put_sized8(in, s);
    return in + prompt;
  };
  return {{"gpt_greedy", input({0, 1, 9, 1, 4, 0, 0, 0}, {"e"}, "to ")},
          {"gpt_nucleus", input({0, 2, 11, 2, 9, 1, 1, 1 + 8 * 2}, {"o", "q"}, "question")},
          {"lstm_sampled", input({1, 3, 11, 0, 4, 2, 2, 1}, {}, fixed_text().substr(0, 30))}};
}

inline const bool registered_generate = register_target({"generate", fuzz_generate, generate_seeds, 1024});

}  // namespace seqgen_fuzz
