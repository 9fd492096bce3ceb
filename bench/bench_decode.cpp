// Decoding speed at batch 1.
//   Decode/gpt_s/kv_cache, Decode/gpt_s/recompute   GPT config S (V=65, C=256, L=4, NH=4, context
//     256): 255 new tokens from an empty prompt, with the KV cache and by recomputing the whole
//     forward pass per token. Compare with ../shared/peers/torch_gpt_generate.py 256 4 4 65 256 255 1,
//     run in the same sitting. Loaded/Decode/gpt_s/kv_cache: the same with a competing CPU-bound
//     process (bench_util.hpp).
//   DecodeCost/<kind>/<t>, kind ∈ gpt, lstm; t = 16, 32, …, 1024   the cost of producing the token
//     at position t: one decoder step whose input token goes to position t (it reads the t cached
//     positions 0 … t−1 and writes position t), so the time per iteration is the time per token.
//     gpt: config S with context 2048, so no step slides the window; the step attends over t + 1
//     keys per layer and head, so its cost grows with t. lstm: config S (V=65, embedding 256,
//     H=256, L=2); the step reads a fixed-size state, so its cost does not depend on t.
#include <benchmark/benchmark.h>
#include <seqgen/seqgen.hpp>

#include <string>

#include "bench_util.hpp"

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
  NoState none;
  Mat<float> logits;
  Sampler sampler(SamplingOptions{1.0, 0});
  std::vector<Token> tokens;
  for (auto _ : state) {
    tokens.assign(1, 0);
    for (Index i = 0; i < kNewTokens; ++i) {
      const Index T = Index(tokens.size());
      model.logits(tokens, 1, T, none, act, logits);
      tokens.push_back(sampler.sample(logits.col(T - 1), rng));
    }
    benchmark::DoNotOptimize(tokens.data());
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(kNewTokens) * double(state.iterations()), benchmark::Counter::kIsRate);
}

// DecodeCost. The decoders cannot be rewound to a position, so each iteration restores a copy of a
// decoder that was prefilled once to position t − kWarmSteps (a copy assignment: same sizes, no
// allocation), runs kWarmSteps untimed steps (they bring the weights back into the caches after the
// copy, as in steady decoding), and times the one step at position t. Pause/ResumeTiming cost a few
// microseconds against a step of a hundred or more.
constexpr Index kWarmSteps = 2;
constexpr Index kMinPosition = 16, kMaxPosition = 1024;

std::vector<Token> prompt_of_length(Index n, Index V) {
  std::vector<Token> prompt(n);
  for (Index i = 0; i < n; ++i) prompt[i] = Token((7 * i + 3) % V);
  return prompt;
}

template <class Decoder>
void time_step_at(benchmark::State& state, const Decoder& saved, Index t) {
  Decoder decoder = saved;
  Token token = 1;
  for (auto _ : state) {
    state.PauseTiming();
    decoder = saved;  // position t − kWarmSteps
    for (Index i = 0; i < kWarmSteps; ++i) decoder.step(TokenSpan(&token, 1));
    state.ResumeTiming();
    benchmark::DoNotOptimize(decoder.step(TokenSpan(&token, 1)).data());  // the token at position t
  }
  check<ShapeError>(decoder.position(0) == t + 1, "DecodeCost: the timed step was at position ",
                    decoder.position(0) - 1, ", expected ", t);
  state.counters["tokens_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

void decode_cost_gpt(benchmark::State& state) {
  const Index t = state.range(0);
  GptConfig config = gpt_s();
  config.context = 2048;  // t + 1 ≤ context: no step slides the window
  Rng rng(1);
  const Gpt<float> model(config, rng);
  GptDecoder<float> saved(model, 1);
  saved.prefill({prompt_of_length(t - kWarmSteps, config.vocab_size)});
  time_step_at(state, saved, t);
}

void decode_cost_lstm(benchmark::State& state) {
  const Index t = state.range(0);
  RecurrentConfig config;
  config.cell = CellKind::lstm;
  config.vocab_size = 65;
  config.embedding = 256;
  config.hidden = 256;
  config.layers = 2;
  Rng rng(1);
  const LstmLm<float> model(config, rng);
  RecurrentDecoder<float, LstmLayer> saved(model, 1);
  saved.prefill({prompt_of_length(t - kWarmSteps, config.vocab_size)});
  time_step_at(state, saved, t);
}

void add_positions(benchmark::internal::Benchmark* family) {
  for (Index t = kMinPosition; t <= kMaxPosition; t *= 2) family->Arg(t);
  family->Unit(benchmark::kMicrosecond)->UseRealTime();
}

const bool decode_registered = [] {
  benchmark::RegisterBenchmark("Decode/gpt_s/kv_cache", decode_kv_cache)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("Loaded/Decode/gpt_s/kv_cache",
                               [](benchmark::State& state) {
                                 seqgen_bench::BusyProcess busy;  // another CPU-bound program
                                 decode_kv_cache(state);
                               })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("Decode/gpt_s/recompute", decode_recompute)->Unit(benchmark::kMillisecond)->UseRealTime();
  // "DecodeCost/<kind>" with Arg(t) gives the names DecodeCost/<kind>/<t>.
  add_positions(benchmark::RegisterBenchmark("DecodeCost/lstm", decode_cost_lstm));
  add_positions(benchmark::RegisterBenchmark("DecodeCost/gpt", decode_cost_gpt));
  return true;
}();

}  // namespace
