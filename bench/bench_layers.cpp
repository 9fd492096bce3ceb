// Per-layer forward and backward at GPT-S widths (C = 256, NH = 4, B·T = 8·256 tokens) and the
// recurrent layers at H = 256 (B·T = 32·128). Every case reports tokens_per_s. Arg 0 runs forward
// only, arg 1 forward + backward, so backward alone costs the difference.
//   build/test/bench/seqgen_bench --benchmark_min_time=0.1   (built by ./scripts/test.sh)
#include <benchmark/benchmark.h>
#include <seqgen/seqgen.hpp>

#include <vector>

namespace {

using namespace seqgen;
constexpr Index kC = 256, kB = 8, kT = 256, kN = kB * kT;

Mat<float> random_input(Index rows, Index cols) {
  Rng rng(1);
  Mat<float> m(rows, cols);
  uniform_init(m, rng, 1.0);
  return m;
}

void report(benchmark::State& state, Index tokens) {
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(tokens) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Linear(benchmark::State& state) {
  Rng rng(1);
  Linear<float> layer("fc", kC, 4 * kC, rng);
  const Mat<float> x = random_input(kC, kN), dy = random_input(4 * kC, kN);
  Mat<float> y, dx;
  for (auto _ : state) {
    layer.forward(x, y);
    if (state.range(0)) layer.backward(x, dy, &dx);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

void BM_Embedding(benchmark::State& state) {
  Rng rng(1);
  Embedding<float> layer("wte", 65, kC, rng);
  std::vector<Token> ids(kN);
  for (Index n = 0; n < kN; ++n) ids[n] = Token((7 * n + 3) % 65);
  const Mat<float> dy = random_input(kC, kN);
  Mat<float> y;
  for (auto _ : state) {
    layer.forward(ids, y);
    if (state.range(0)) layer.backward(ids, dy);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

void BM_LayerNorm(benchmark::State& state) {
  LayerNorm<float> layer("ln", kC);
  LayerNorm<float>::Cache cache;
  const Mat<float> x = random_input(kC, kN), dy = random_input(kC, kN);
  Mat<float> y, dx;
  for (auto _ : state) {
    layer.forward(x, y, cache);
    if (state.range(0)) layer.backward(x, dy, cache, dx);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

// GELU alone on the MLP's hidden width 4C.
void BM_Gelu(benchmark::State& state) {
  const Gelu<float> layer;
  const Mat<float> x = random_input(4 * kC, kN), dy = random_input(4 * kC, kN);
  Mat<float> y, dx;
  for (auto _ : state) {
    layer.forward(x, y);
    if (state.range(0)) layer.backward(x, dy, dx);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

void BM_Mlp(benchmark::State& state) {
  Rng rng(1);
  Mlp<float> layer("mlp", kC, rng);
  Mlp<float>::Cache cache;
  const Mat<float> x = random_input(kC, kN), dy = random_input(kC, kN);
  Mat<float> y, dx;
  for (auto _ : state) {
    layer.forward(x, y, cache);
    if (state.range(0)) layer.backward(x, dy, cache, dx);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

void BM_Attention(benchmark::State& state) {
  Rng rng(1);
  CausalSelfAttention<float> layer("attn", kC, 4, rng);
  CausalSelfAttention<float>::Cache cache;
  const Mat<float> x = random_input(kC, kN), dy = random_input(kC, kN);
  Mat<float> y, dx;
  for (auto _ : state) {
    layer.forward(x, kB, kT, y, cache);
    if (state.range(0)) layer.backward(x, dy, kB, kT, cache, dx);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

void BM_TransformerBlock(benchmark::State& state) {
  Rng rng(1);
  TransformerBlock<float> layer("block", kC, 4, rng);
  TransformerBlock<float>::Cache cache;
  const Mat<float> x = random_input(kC, kN), dy = random_input(kC, kN);
  Mat<float> y, dx;
  for (auto _ : state) {
    layer.forward(x, kB, kT, y, cache, rng, true);
    if (state.range(0)) layer.backward(x, dy, kB, kT, cache, dx, true);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, kN);
}

template <template <typename> class Layer>
void BM_Recurrent(benchmark::State& state) {
  const Index B = 32, T = 128, H = 256;
  Rng rng(1);
  Layer<float> layer("rnn", H, H, rng);
  typename Layer<float>::Cache cache;
  const auto s0 = layer.zero_state(B);
  typename Layer<float>::State sT, ds0;
  const Mat<float> x = random_input(H, B * T), dh = random_input(H, B * T);
  Mat<float> h, dx;
  for (auto _ : state) {
    layer.forward(x, B, T, s0, h, sT, cache);
    if (state.range(0)) layer.backward(x, B, T, s0, dh, typename Layer<float>::State{}, cache, dx, ds0);
    benchmark::DoNotOptimize(h.data());
  }
  report(state, B * T);
}

void BM_SoftmaxHead(benchmark::State& state) {
  Rng rng(1);
  Embedding<float> wte("wte", 65, kC, rng);
  SoftmaxHead<float> head;
  SoftmaxHead<float>::Cache cache;
  const Mat<float> x = random_input(kC, kN);
  std::vector<Token> targets(kN);
  for (Index n = 0; n < kN; ++n) targets[n] = Token(n % 65);
  Mat<float> dx;
  for (auto _ : state) {
    benchmark::DoNotOptimize(head.forward(wte.weight, x, targets, cache));
    if (state.range(0)) head.backward(wte.weight, x, targets, cache, dx);
  }
  report(state, kN);
}

}  // namespace

// Arg 0: forward only; arg 1: forward + backward.
BENCHMARK(BM_Linear)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Embedding)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LayerNorm)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Gelu)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Mlp)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Attention)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TransformerBlock)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SoftmaxHead)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Recurrent, seqgen::RnnLayer)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Recurrent, seqgen::LstmLayer)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Recurrent, seqgen::GruLayer)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
