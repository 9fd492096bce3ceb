// GPT-2 124M's shape (V = 50257, context 1024, C = 768, L = 12, NH = 12, tied head), random weights:
//   TrainStep/gpt2_124m   one training step at B = 4, T = 64: forward, backward, clip at 1, AdamW,
//                         as Trainer::step runs them. Peers, in the same sitting:
//                           ../shared/peers/llmc/llmc_step 4 64 768 12 12 50257 3      (llm.c's CPU train_gpt2.c)
//                           /usr/bin/python3 ../shared/peers/torch_gpt_step.py 4 64 768 12 12 50257 3 {1,2}
//                         Counters: tokens_per_s, gflops (train_flops_per_token(64) per second).
//   Decode/gpt2_124m      32 new tokens at batch 1 with the KV cache, after a 1-token prompt.
//                         Counters: tokens_per_s, and weight_gb_per_s: the bytes of weights a token
//                         reads (the packed blocks, 12·C²·L floats, and the tied head, V·C) times
//                         tokens_per_s. Decoding one sequence of this size is bound by memory
//                         bandwidth; compare weight_gb_per_s with Memory/stream_copy.
//   Memory/stream_copy    a STREAM-style copy b[i] = a[i] of two 256 MiB arrays on seqgen's threads.
//                         Counter bytes_per_s, counted as STREAM does: 8 bytes per float copied
//                         (a read and a write; the write-allocate read is not counted).
// All rates are per second of wall-clock time.
#include <benchmark/benchmark.h>
#include <seqgen/seqgen.hpp>

#include <vector>

#include "bench_util.hpp"

namespace {

using namespace seqgen;

void train_step_gpt2_124m(benchmark::State& state) {
  const Index B = 4, T = 64;
  const GptConfig c = gpt2_config("124M");
  Rng rng(1);
  Gpt<float> model(c, rng);
  Gpt<float>::Activations act;
  NoState none;
  AdamW<float>::Options o;
  o.lr = 1e-5;
  AdamW<float> adamw(o);
  adamw.init_state(model);
  const std::vector<Token> ids = seqgen_bench::random_ids(B * T + 1, c.vocab_size);
  const TokenSpan inputs(ids.data(), B * T), targets(ids.data() + 1, B * T);
  auto step = [&] {
    zero_grad(model);
    const float loss = model.forward(inputs, targets, B, T, none, act, rng, true);
    model.backward(inputs, targets, B, T, act);
    clip_grad_norm(model, 1.0);
    adamw.step(model);
    return loss;
  };
  step();  // sizes every workspace
  for (auto _ : state) benchmark::DoNotOptimize(step());
  const double tokens = double(B * T) * double(state.iterations());
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["gflops"] = benchmark::Counter(tokens * c.train_flops_per_token(T) * 1e-9, benchmark::Counter::kIsRate);
}

void decode_gpt2_124m(benchmark::State& state) {
  constexpr Index kNewTokens = 32;
  const GptConfig c = gpt2_config("124M");
  Rng rng(1);
  const Gpt<float> model(c, rng);
  GptDecoder<float> decoder(model, 1);
  Sampler sampler(SamplingOptions{1.0, 0});
  const std::vector<std::vector<Token>> start = {{0}};
  for (auto _ : state) {
    decoder.reset();
    Token token = sampler.sample(decoder.prefill(start).col(0), rng);
    for (Index i = 1; i < kNewTokens; ++i) token = sampler.sample(decoder.step(TokenSpan(&token, 1)).col(0), rng);
    benchmark::DoNotOptimize(token);
  }
  const double C = double(c.channels), tokens = double(kNewTokens) * double(state.iterations());
  const double weight_bytes = (12.0 * C * C * double(c.layers) + double(c.vocab_size) * C) * sizeof(float);
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["weight_gb_per_s"] = benchmark::Counter(tokens * weight_bytes * 1e-9, benchmark::Counter::kIsRate);
}

void stream_copy(benchmark::State& state) {
  const Index n = Index(64) << 20;  // 256 MiB of floats
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  constexpr Index kBlock = Index(1) << 16;
  auto copy = [&] {
    parallel_for(n / kBlock, true, [&](Index k) {
      std::copy(a.begin() + k * kBlock, a.begin() + (k + 1) * kBlock, b.begin() + k * kBlock);
    });
  };
  copy();  // first touch
  for (auto _ : state) {
    copy();
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.counters["bytes_per_s"] =
      benchmark::Counter(2.0 * sizeof(float) * double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
}

const bool gpt2_registered = [] {
  benchmark::RegisterBenchmark("TrainStep/gpt2_124m", train_step_gpt2_124m)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("Decode/gpt2_124m", decode_gpt2_124m)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("Memory/stream_copy", stream_copy)->Unit(benchmark::kMillisecond)->UseRealTime();
  return true;
}();

}  // namespace
