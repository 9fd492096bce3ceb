// One full training step, as Trainer::step runs it: sample a batch, forward, backward, clip,
// AdamW. The configs match ../shared/peers:
//   TrainStep/gpt_s    V=65, C=256, L=4, NH=4, T=256, B=8   torch_gpt_step.py 8 256 256 4 4 65 5 {1,2}
//   TrainStep/lstm_s   V=65, H=256 (embedding 256), L=2, T=128, B=32
//                                                          torch_rnn_step.py lstm 32 128 256 2 65 5 {1,2}
//   TrainStep/gpt_s_T2048/{reference,flash,flash_recompute}   gpt_s widths at T=2048, B=1 (context
//                      2048), with the attention's reference kernel (P kept, (T, T) per head) or the
//                      flash kernel, and the flash kernel with the blocks recomputed in backward
//                      (Trainer::set_recompute).
//                      Counter heap_mib: the heap in use after the first step (mallinfo2), less
//                      the heap before the trainer was made: weights, gradients, AdamW moments,
//                      activations and scratch. The process's peak RSS (one variant per run):
//     /usr/bin/time -v seqgen_bench --benchmark_filter='TrainStep/gpt_s_T2048/flash/'
//   Loaded/TrainStep/gpt_s, Loaded/TrainStep/lstm_s   the same with a competing CPU-bound process
// Counters: tokens_per_s (B·T per step) and gflops, the model FLOPs of the config
// (train_flops_per_token) per second, both per second of wall-clock time (UseRealTime).
#include <benchmark/benchmark.h>
#include <seqgen/seqgen.hpp>

#include <malloc.h>

#include <string>

#include "bench_util.hpp"

namespace {

using namespace seqgen;

constexpr Index kVocab = 65;

Tokenizer tokenizer65() { return seqgen_bench::characters(kVocab); }
TokenDataset random_tokens(Index n) { return seqgen_bench::random_tokens(n, kVocab); }

TrainOptions options(Index B, Index T) {
  TrainOptions o;
  o.batch = B;
  o.seq_len = T;
  o.steps = 1000000;
  o.warmup = 10;
  o.lr = 1e-4;  // small: the weights stay in a normal range however long the benchmark runs
  return o;
}

template <class Model>
void run_steps(benchmark::State& state, Trainer<Model>& trainer, double flops_per_token) {
  trainer.step();  // the first step sizes every workspace
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step());
  const double tokens = double(trainer.options.batch * trainer.options.seq_len) * double(state.iterations());
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["gflops"] = benchmark::Counter(tokens * flops_per_token * 1e-9, benchmark::Counter::kIsRate);
}

void train_step_gpt_s(benchmark::State& state) {
  GptConfig c;
  c.vocab_size = kVocab;
  c.context = 256;
  c.channels = 256;
  c.layers = 4;
  c.heads = 4;
  Rng rng(1);
  const TokenDataset data = random_tokens(1 << 18);
  Trainer<Gpt<float>> trainer(Gpt<float>(c, rng), tokenizer65(), data, options(8, 256));
  run_steps(state, trainer, c.train_flops_per_token(256));
}

double heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 m = mallinfo2();
  return double(m.uordblks) + double(m.hblkhd);
#else
  return 0;  // not measured
#endif
}

void train_step_gpt_s_long(benchmark::State& state, AttentionKernel kernel, bool recompute) {
  const Index T = 2048, B = 1;
  GptConfig c;
  c.vocab_size = kVocab;
  c.context = T;
  c.channels = 256;
  c.layers = 4;
  c.heads = 4;
  Rng rng(1);
  const TokenDataset data = random_tokens(1 << 18);
  const double heap_before = heap_in_use();
  Trainer<Gpt<float>> trainer(Gpt<float>(c, rng), tokenizer65(), data, options(B, T));
  for (auto& block : trainer.model.blocks) block.attn.kernel = kernel;
  trainer.set_recompute(recompute);
  trainer.step();
  state.counters["heap_mib"] = (heap_in_use() - heap_before) / (1024.0 * 1024.0);
  run_steps(state, trainer, c.train_flops_per_token(T));
}

void train_step_lstm_s(benchmark::State& state) {
  RecurrentConfig c;
  c.cell = CellKind::lstm;
  c.vocab_size = kVocab;
  c.embedding = 256;
  c.hidden = 256;
  c.layers = 2;
  Rng rng(1);
  const TokenDataset data = random_tokens(1 << 18);
  Trainer<LstmLm<float>> trainer(LstmLm<float>(c, rng), tokenizer65(), data, options(32, 128));
  run_steps(state, trainer, c.train_flops_per_token());
}

// The same cases with another CPU-bound process running (seqgen_bench::BusyProcess): on this
// 2-core machine, 2 threads must not be slower than 1.
template <void (*Case)(benchmark::State&)>
void loaded(benchmark::State& state) {
  seqgen_bench::BusyProcess busy;
  Case(state);
}

const bool train_step_registered = [] {
  benchmark::RegisterBenchmark("TrainStep/gpt_s", train_step_gpt_s)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("TrainStep/lstm_s", train_step_lstm_s)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("Loaded/TrainStep/gpt_s", loaded<train_step_gpt_s>)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("Loaded/TrainStep/lstm_s", loaded<train_step_lstm_s>)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("TrainStep/gpt_s_T2048/reference", train_step_gpt_s_long, AttentionKernel::reference,
                               false)
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("TrainStep/gpt_s_T2048/flash", train_step_gpt_s_long, AttentionKernel::flash, false)
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("TrainStep/gpt_s_T2048/flash_recompute", train_step_gpt_s_long, AttentionKernel::flash,
                               true)
      ->Unit(benchmark::kMillisecond)->UseRealTime();
  return true;
}();

}  // namespace
