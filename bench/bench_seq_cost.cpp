// What one layer costs as the sequence grows: SeqCost/<kind>/<T> runs forward + backward of ONE
// layer over one sequence (B = 1) of T tokens, width 256 (4 heads for attention and gpt_block),
// for T = 16, 32, …, 2048.
//   kind       layer                                        work per token grows with
//   rnn        RnnLayer   (D = H = 256)                     nothing: O(T) per sequence
//   lstm       LstmLayer  (D = H = 256)                     nothing: O(T)
//   gru        GruLayer   (D = H = 256)                     nothing: O(T)
//   attention  CausalSelfAttention (C = 256, NH = 4)        T: O(T²) per sequence
//              with the flash kernel (keeps each query's log-sum-exp: the cache holds O(T))
//   attention_reference  the same with the reference kernel (keeps P: a (T, T) cache per head)
//              (by default the layer runs the reference below kFlashMinT, flash from there on)
//   gpt_block  TransformerBlock    (C = 256, NH = 4)        T: O(T²), the attention's default kernel
// Counters:
//   tokens_per_s      T tokens per iteration, as a rate
//   gflops            model FLOPs per second, from the formulas in flops_per_token() below
//   activation_bytes  bytes the layer's Cache holds after forward on a fresh Cache: what backward
//                     keeps alive, and the scratch forward used (gpt_block: GELU's output; the
//                     flash kernel's work space); backward's own scratch is still empty then
// Each kind is one family (one name, one Arg per T), so Google Benchmark fits its times to the
// stated complexity and prints SeqCost/<kind>_BigO and SeqCost/<kind>_RMS after the family.
//   build/bench/bench/seqgen_bench --benchmark_filter=SeqCost --benchmark_min_time=0.05
#include <benchmark/benchmark.h>
#include <seqgen/seqgen.hpp>

#include <string>

namespace {

using namespace seqgen;

constexpr Index kWidth = 256, kHeads = 4, kMinT = 16, kMaxT = 2048;

enum class Kind { rnn, lstm, gru, attention, attention_reference, gpt_block };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::rnn: return "rnn";
    case Kind::lstm: return "lstm";
    case Kind::gru: return "gru";
    case Kind::attention: return "attention";
    case Kind::attention_reference: return "attention_reference";
    case Kind::gpt_block: return "gpt_block";
  }
  return "?";
}

// Model FLOPs of forward + backward per token of a length-T sequence, counting a multiply-add as
// 2 FLOPs and only the matrix products, with backward = 2 × forward (as GptConfig and
// RecurrentConfig count a training step: 3 × forward). D = H = C = 256.
//   rnn        3 · 2·H·(D + H)                    W_ih x_t and W_hh h_{t−1}
//   lstm       3 · 2·4H·(D + H)                   four gates
//   gru        3 · 2·3H·(D + H)                   three gates
//   attention  3 · (8·C² + 4·T·C)                 qkv (2·C·3C) + proj (2·C·C), and QKᵀ, PV over all T
//                                                 keys (2·T·C each; the causal mask halves the real
//                                                 work, but the count is the unmasked one, like
//                                                 GptConfig::train_flops_per_token)
//   gpt_block  3 · (24·C² + 4·T·C)                attention's products plus the MLP (2·C·4C + 2·4C·C)
double flops_per_token(Kind kind, Index T) {
  const double H = double(kWidth), D = double(kWidth), C = double(kWidth);
  switch (kind) {
    case Kind::rnn: return 3.0 * 2.0 * H * (D + H);
    case Kind::lstm: return 3.0 * 2.0 * 4.0 * H * (D + H);
    case Kind::gru: return 3.0 * 2.0 * 3.0 * H * (D + H);
    case Kind::attention:
    case Kind::attention_reference: return 3.0 * (8.0 * C * C + 4.0 * double(T) * C);
    case Kind::gpt_block: return 3.0 * (24.0 * C * C + 4.0 * double(T) * C);
  }
  return 0;
}

// Bytes held by the Mats of each Cache. Every field of the Cache struct is listed, so a field
// added to a header must be added here too.
template <typename Derived>
double bytes(const Eigen::PlainObjectBase<Derived>& m) {
  return double(m.size()) * double(sizeof(typename Derived::Scalar));
}
// The fields every RecurrentLayer cache has; the cell's own (Cache::saved) and the LSTM's c are added below.
template <class Cache>
double recurrent_cache_bytes(const Cache& c) {
  return bytes(c.gates) + bytes(c.h_prev) + bytes(c.gh) + bytes(c.dgates) + bytes(c.dgh) + bytes(c.dstate.h);
}
double cache_bytes(const RnnLayer<float>::Cache& c) { return recurrent_cache_bytes(c); }
double cache_bytes(const LstmLayer<float>::Cache& c) {
  return recurrent_cache_bytes(c) + bytes(c.dstate.c) + bytes(c.saved.c_prev) + bytes(c.saved.tanh_c) +
         bytes(c.saved.dbias);
}
double cache_bytes(const GruLayer<float>::Cache& c) { return recurrent_cache_bytes(c) + bytes(c.saved.hn); }
double cache_bytes(const CausalSelfAttention<float>::Cache& c) {
  return bytes(c.qkv) + bytes(c.y) + bytes(c.att) + bytes(c.lse) + bytes(c.dy) + bytes(c.dqkv) + bytes(c.dp) +
         bytes(c.delta) + bytes(c.flash_scratch);
}
double cache_bytes(const LayerNorm<float>::Cache& c) { return bytes(c.mean) + bytes(c.rstd); }
double cache_bytes(const Mlp<float>::Cache& c) { return bytes(c.h) + bytes(c.a); }
double cache_bytes(const Dropout<float>::Cache& c) { return bytes(c.mask); }
double cache_bytes(const TransformerBlock<float>::Cache& c) {
  return cache_bytes(c.ln1) + cache_bytes(c.ln2) + cache_bytes(c.attn) + cache_bytes(c.mlp) + cache_bytes(c.drop1) +
         cache_bytes(c.drop2) + bytes(c.attn_out) + bytes(c.x1) + bytes(c.mlp_out) + bytes(c.dx1) +
         bytes(c.dbranch) + bytes(c.norm);
}

Mat<float> random_input(Index rows, Index cols, std::uint64_t seed) {
  Rng rng(seed);
  Mat<float> m(rows, cols);
  uniform_init(m, rng, 1.0);
  return m;
}

void report(benchmark::State& state, Kind kind, Index T, double activation_bytes) {
  const double tokens = double(T) * double(state.iterations());
  state.SetComplexityN(T);
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["gflops"] = benchmark::Counter(tokens * flops_per_token(kind, T) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["activation_bytes"] = activation_bytes;
}

// RnnLayer, LstmLayer or GruLayer: one sequence, from the zero state.
template <template <typename> class Layer>
void seq_cost_recurrent(benchmark::State& state, Kind kind) {
  const Index T = state.range(0), B = 1, H = kWidth;
  Rng rng(1);
  Layer<float> layer("layer", H, H, rng);
  const auto s0 = layer.zero_state(B);
  const typename Layer<float>::State no_grad;  // dsT = 0
  typename Layer<float>::State sT, ds0;
  const Mat<float> x = random_input(H, B * T, 2), dh = random_input(H, B * T, 3);
  Mat<float> h, dx;

  typename Layer<float>::Cache fresh;
  layer.forward(x, B, T, s0, h, sT, fresh);
  const double kept = cache_bytes(fresh);

  typename Layer<float>::Cache cache;
  for (auto _ : state) {
    layer.forward(x, B, T, s0, h, sT, cache);
    layer.backward(x, B, T, s0, dh, no_grad, cache, dx, ds0);
    benchmark::DoNotOptimize(dx.data());
  }
  report(state, kind, T, kept);
}

void seq_cost_attention(benchmark::State& state, Kind kind) {
  const Index T = state.range(0), B = 1;
  Rng rng(1);
  CausalSelfAttention<float> layer("attn", kWidth, kHeads, rng);
  layer.kernel = kind == Kind::attention_reference ? AttentionKernel::reference : AttentionKernel::flash;
  const Mat<float> x = random_input(kWidth, B * T, 2), dy = random_input(kWidth, B * T, 3);
  Mat<float> y, dx;

  CausalSelfAttention<float>::Cache fresh;
  layer.forward(x, B, T, y, fresh);
  const double kept = cache_bytes(fresh);

  CausalSelfAttention<float>::Cache cache;
  for (auto _ : state) {
    layer.forward(x, B, T, y, cache);
    layer.backward(x, dy, B, T, cache, dx);
    benchmark::DoNotOptimize(dx.data());
  }
  report(state, kind, T, kept);
}

// Dropout 0 (GPT config S), so the training flag changes nothing but is passed as in training.
void seq_cost_gpt_block(benchmark::State& state) {
  const Index T = state.range(0), B = 1;
  Rng rng(1);
  TransformerBlock<float> block("block", kWidth, kHeads, rng);
  const Mat<float> x = random_input(kWidth, B * T, 2), dy = random_input(kWidth, B * T, 3);
  Mat<float> y, dx;
  const bool training = true;

  TransformerBlock<float>::Cache fresh;
  block.forward(x, B, T, y, fresh, rng, training);
  const double kept = cache_bytes(fresh);

  TransformerBlock<float>::Cache cache;
  for (auto _ : state) {
    block.forward(x, B, T, y, cache, rng, training);
    block.backward(x, dy, B, T, cache, dx, training);
    benchmark::DoNotOptimize(dx.data());
  }
  report(state, Kind::gpt_block, T, kept);
}

// One family per kind: "SeqCost/<kind>" with Arg(T) gives the names SeqCost/<kind>/<T>.
void add_family(Kind kind, benchmark::internal::Benchmark* family) {
  for (Index T = kMinT; T <= kMaxT; T *= 2) family->Arg(T);
  const bool quadratic = kind != Kind::rnn && kind != Kind::lstm && kind != Kind::gru;
  family->Complexity(quadratic ? benchmark::oNSquared : benchmark::oN)->Unit(benchmark::kMicrosecond)->UseRealTime();
}

std::string family_name(Kind kind) { return std::string("SeqCost/") + kind_name(kind); }

const bool seq_cost_registered = [] {
  // The thread count in the JSON context, for the plots' captions.
  benchmark::AddCustomContext("seqgen_threads", std::to_string(num_threads()));
  add_family(Kind::rnn, benchmark::RegisterBenchmark(family_name(Kind::rnn).c_str(),
                                                     seq_cost_recurrent<RnnLayer>, Kind::rnn));
  add_family(Kind::lstm, benchmark::RegisterBenchmark(family_name(Kind::lstm).c_str(),
                                                      seq_cost_recurrent<LstmLayer>, Kind::lstm));
  add_family(Kind::gru, benchmark::RegisterBenchmark(family_name(Kind::gru).c_str(),
                                                     seq_cost_recurrent<GruLayer>, Kind::gru));
  add_family(Kind::attention, benchmark::RegisterBenchmark(family_name(Kind::attention).c_str(),
                                                           seq_cost_attention, Kind::attention));
  add_family(Kind::attention_reference,
             benchmark::RegisterBenchmark(family_name(Kind::attention_reference).c_str(), seq_cost_attention,
                                          Kind::attention_reference));
  add_family(Kind::gpt_block,
             benchmark::RegisterBenchmark(family_name(Kind::gpt_block).c_str(), seq_cost_gpt_block));
  return true;
}();

}  // namespace
