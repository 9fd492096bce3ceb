// Decoding speed of GPT config S (V=65, C=256, L=4, NH=4, context 256): 255 new tokens at batch 1
// from an empty prompt, with the KV cache and by recomputing the whole forward pass per token.
// Compare with ../shared/peers/torch_gpt_generate.py 256 4 4 65 256 255 1, run in the same sitting.
#include <benchmark/benchmark.h>
#include <seqgen/seqgen.hpp>

namespace {

using namespace seqgen;

GptConfig gpt_s() {
  GptConfig c;
  c.vocab_size = 65;
  c.context = 256;
  c.channels = 256;
  c.layers = 4;
  c.heads = 4;
  return c;
}

constexpr Index kNewTokens = 255;

void decode_kv_cache(benchmark::State& state) {
  Rng rng(1);
  const Gpt<float> model(gpt_s(), rng);
  GptDecoder<float> decoder(model, 1);
  Sampler sampler(SamplingOptions{1.0, 0});
  const std::vector<std::vector<Token>> start = {{0}};
  for (auto _ : state) {
    decoder.reset();
    Token token = sampler.sample(decoder.prefill(start).col(0), rng);
    for (Index i = 1; i < kNewTokens; ++i) token = sampler.sample(decoder.step(TokenSpan(&token, 1)).col(0), rng);
    benchmark::DoNotOptimize(token);
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(kNewTokens) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void decode_recompute(benchmark::State& state) {
  Rng rng(1);
  Gpt<float> model(gpt_s(), rng);
  Gpt<float>::Activations act;
  Mat<float> logits;
  Sampler sampler(SamplingOptions{1.0, 0});
  std::vector<Token> tokens;
  for (auto _ : state) {
    tokens.assign(1, 0);
    for (Index i = 0; i < kNewTokens; ++i) {
      const Index T = Index(tokens.size());
      model.logits(tokens, 1, T, act, logits);
      tokens.push_back(sampler.sample(logits.col(T - 1), rng));
    }
    benchmark::DoNotOptimize(tokens.data());
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(kNewTokens) * double(state.iterations()), benchmark::Counter::kIsRate);
}

const bool registered = [] {
  benchmark::RegisterBenchmark("Decode/gpt_s/kv_cache", decode_kv_cache)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("Decode/gpt_s/recompute", decode_recompute)->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
