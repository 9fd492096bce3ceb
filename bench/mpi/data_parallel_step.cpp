// Data-parallel training steps on this machine (docs/distributed.md, "Measured"): the time of one
// Trainer::step of TrainStep/gpt_s and TrainStep/lstm_s (bench/bench_train_step.cpp's configs and
// global batches), with the part spent in the gradient all-reduce, and the time of one all-reduce
// of the gpt_s gradients alone.
//
//   OMP_NUM_THREADS=2 seqgen_mpi_bench gpt_s 20                 one process, 2 threads
//   OMP_NUM_THREADS=1 mpirun -np 2 seqgen_mpi_bench gpt_s 20    2 ranks, 1 thread each
//   OMP_NUM_THREADS=1 mpirun -np 2 seqgen_mpi_bench gpt_s 20 zero   the same with ZeRO-1
//   OMP_NUM_THREADS=1 mpirun -np 2 seqgen_mpi_bench gpt_s 20 overlap 2   all-reduce overlapped with
//                                                   backward, in buckets of 2 MiB (default 8)
//   OMP_NUM_THREADS=1 mpirun -np 2 seqgen_mpi_bench gpt_s 20 ab-overlap 2   A/B in one run: steps of
//       two trainers alternate, the plain all-reduce (A) and the overlapped one (B), so that both
//       see the same load (ab-zero: ZeRO-1 as B); prints the medians and the median of B − A
//   mpirun -np 2 seqgen_mpi_bench allreduce 200                 MPI_Allreduce of the gpt_s gradients,
//                                                               and ZeRO-1's collectives on them
//   mpirun -np 2 seqgen_mpi_bench overlap 10                    whether an all-reduce overlaps compute
//
// Rank 0 prints one line: the median and the minimum over the steps.
#include <seqgen/distributed/data_parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

using namespace seqgen;
using Clock = std::chrono::steady_clock;
constexpr Index kVocab = 65;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

Tokenizer tokenizer65() {
  std::string symbols;
  for (int i = 0; i < kVocab; ++i) symbols += char('!' + i);
  return Tokenizer::characters(symbols);
}

TokenDataset random_tokens(Index n) {
  Rng rng(7);
  std::vector<Token> ids(static_cast<std::size_t>(n));
  for (Token& id : ids) id = Token(rng.next_u64() % kVocab);
  return TokenDataset::from_tokens(TokenSpan(ids.data(), n), kVocab);
}

TrainOptions options(Index B, Index T) {
  TrainOptions o;
  o.batch = B;
  o.seq_len = T;
  o.steps = 1000000;
  o.warmup = 10;
  o.lr = 1e-4;
  return o;
}

GptConfig gpt_s() {
  GptConfig c;
  c.vocab_size = kVocab;
  c.context = 256;
  c.channels = 256;
  c.layers = 4;
  c.heads = 4;
  return c;
}

RecurrentConfig lstm_s() {
  RecurrentConfig c;
  c.cell = CellKind::lstm;
  c.vocab_size = kVocab;
  c.embedding = 256;
  c.hidden = 256;
  c.layers = 2;
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Model>
void steps(const MpiSession& mpi, Model model, Index B, Index T, int n, const char* name, const std::string& mode,
           std::size_t bucket_mib) {
  const bool zero = mode == "zero";
  const TokenDataset data = random_tokens(1 << 18);
  Trainer<Model> trainer(std::move(model), tokenizer65(), data, options(B, T));
  std::optional<DataParallel<Model>> dp;
  double reduce_time = 0, update_time = 0;
  if (mpi.world() > 1) {
    DataParallelOptions dpo;
    dpo.shard_optimizer = zero;
    dpo.overlap = mode == "overlap";
    dpo.bucket_bytes = bucket_mib << 20;
    dp.emplace(mpi.comm(), trainer, dpo);
    auto reduce = std::move(trainer.reduce_gradients);
    trainer.reduce_gradients = [&, reduce](Model& m, double& loss) {
      const auto t0 = Clock::now();
      reduce(m, loss);
      reduce_time += seconds(t0, Clock::now());
    };
    if (zero) {
      auto update = std::move(trainer.step_sharded);
      trainer.step_sharded = [&, update](Model& m, AdamW<float>& optimizer) {
        const auto t0 = Clock::now();
        update(m, optimizer);
        update_time += seconds(t0, Clock::now());
      };
    }
  }
  trainer.step();  // sizes every workspace
  std::vector<double> times, reduces, updates;
  for (int i = 0; i < n; ++i) {
    reduce_time = update_time = 0;
    if (dp) MPI_Barrier(mpi.comm());  // every rank starts the step together
    const auto t0 = Clock::now();
    trainer.step();
    times.push_back(seconds(t0, Clock::now()));
    reduces.push_back(reduce_time);
    updates.push_back(update_time);
  }
  const double P = double(count_params(trainer.model));
  const double state_bytes = dp && dp->sharded() ? double(dp->sharded()->state_bytes()) : 2 * 4 * P;
  char update[96] = "";
  if (dp && zero)
    std::snprintf(update, sizeof update, ", AdamW on the slice + all-gather median %.2f ms", 1e3 * median(updates));
  if (mpi.rank() == 0)
    std::printf("%s%s ranks=%d threads=%d B=%lld T=%lld buckets of %zu MiB: step median %.2f ms (min %.2f), "
                "%s median %.2f ms "
                "(%.1f%%)%s, %.0f tokens/s, gradient %.2f MB, AdamW state %.2f MB per rank\n",
                name, !dp ? "" : zero ? " ZeRO-1" : mode == "overlap" ? " overlapped" : "", mpi.world(), num_threads(),
                (long long)B, (long long)T, bucket_mib,
                1e3 * median(times), 1e3 * *std::min_element(times.begin(), times.end()),
                dp && zero ? "reduce-scatter" : mode == "overlap" ? "all-reduce after backward" : "all-reduce",
                1e3 * median(reduces),
                100 * median(reduces) / median(times),
                update,
                double(B * T) / median(times), 4e-6 * P, 1e-6 * state_bytes);
}

// A/B: two trainers of the same model, the plain all-reduce (A) and `b` (B), their steps
// alternating (A first on even steps, B first on odd ones), so that a machine whose load changes
// from second to second weighs on both alike.
template <typename Model>
void steps_ab(const MpiSession& mpi, const Model& model, Index B, Index T, int n, const char* name,
              const DataParallelOptions& b, const char* b_name) {
  const TokenDataset data = random_tokens(1 << 18);
  Trainer<Model> ta(model, tokenizer65(), data, options(B, T)), tb(model, tokenizer65(), data, options(B, T));
  DataParallelOptions a;
  a.bucket_bytes = b.bucket_bytes;
  DataParallel<Model> da(mpi.comm(), ta, a), db(mpi.comm(), tb, b);
  ta.step();
  tb.step();
  std::vector<double> time_a, time_b, diff;
  auto timed = [&](Trainer<Model>& t) {
    MPI_Barrier(mpi.comm());
    const auto t0 = Clock::now();
    t.step();
    return seconds(t0, Clock::now());
  };
  for (int i = 0; i < n; ++i) {
    double x, y;
    if (i % 2 == 0) {
      x = timed(ta);
      y = timed(tb);
    } else {
      y = timed(tb);
      x = timed(ta);
    }
    time_a.push_back(x);
    time_b.push_back(y);
    diff.push_back(y - x);
  }
  if (mpi.rank() == 0)
    std::printf("%s A/B ranks=%d threads=%d buckets of %zu MiB: all-reduce median %.2f ms (min %.2f), %s median "
                "%.2f ms (min %.2f), median of B - A %+.2f ms (%+.1f%%)\n",
                name, mpi.world(), num_threads(), b.bucket_bytes >> 20, 1e3 * median(time_a),
                1e3 * *std::min_element(time_a.begin(), time_a.end()), b_name, 1e3 * median(time_b),
                1e3 * *std::min_element(time_b.begin(), time_b.end()), 1e3 * median(diff),
                100 * median(diff) / median(time_a));
}

void allreduce(const MpiSession& mpi, int n) {
  Rng rng(1);
  Gpt<float> model(gpt_s(), rng);
  GradientAllReduce<float> reduce(mpi.comm());
  double loss = 1;
  reduce(model, loss);
  const std::size_t count = reduce.reduced_scalars();
  std::vector<float> flat(count, 1.0f);
  std::vector<double> bare, packed;
  for (int i = 0; i < n; ++i) {
    MPI_Barrier(mpi.comm());
    auto t0 = Clock::now();
    MPI_Allreduce(MPI_IN_PLACE, flat.data(), int(count), MPI_FLOAT, MPI_SUM, mpi.comm());
    bare.push_back(seconds(t0, Clock::now()));
    MPI_Barrier(mpi.comm());
    t0 = Clock::now();
    reduce(model, loss);
    packed.push_back(seconds(t0, Clock::now()));
  }
  if (mpi.rank() == 0)
    std::printf("allreduce ranks=%d: %zu floats (%.2f MB) in %zu buckets: MPI_Allreduce median %.3f ms (min %.3f), "
                "with pack, loss and unpack (GradientAllReduce) median %.3f ms; %.2f GB/s of ring traffic\n",
                mpi.world(), count, 4e-6 * double(count), (count + reduce.bucket_scalars() - 1) / reduce.bucket_scalars(),
                1e3 * median(bare), 1e3 * *std::min_element(bare.begin(), bare.end()), 1e3 * median(packed),
                2.0 * (mpi.world() - 1) / mpi.world() * 4e-9 * double(count) / median(bare));
  // ZeRO-1's collectives on the same gradients: reduce (pack, reduce-scatter, 1/N, the norm and
  // loss) and step (AdamW on the slice, pack, all-gather, unpack; lr 0 leaves the weights).
  ShardedAdamW<float> sharded(mpi.comm(), model);
  AdamW<float> optimizer;
  optimizer.options.lr = 0;
  optimizer.init_state(model);
  sharded.take_state(optimizer);
  std::vector<double> scatter, gather;
  for (int i = 0; i < n; ++i) {
    MPI_Barrier(mpi.comm());
    auto t0 = Clock::now();
    sharded.reduce(model, loss);
    scatter.push_back(seconds(t0, Clock::now()));
    MPI_Barrier(mpi.comm());
    t0 = Clock::now();
    sharded.step(model, optimizer);
    gather.push_back(seconds(t0, Clock::now()));
  }
  if (mpi.rank() == 0)
    std::printf("zero ranks=%d: %zu of %zu floats per rank in %zu buckets: reduce (reduce-scatter, norm, loss) "
                "median %.3f ms (min %.3f), step (AdamW on the slice, all-gather) median %.3f ms (min %.3f)\n",
                mpi.world(), sharded.slice_scalars(), sharded.total_scalars(), sharded.buckets(), 1e3 * median(scatter),
                1e3 * *std::min_element(scatter.begin(), scatter.end()), 1e3 * median(gather),
                1e3 * *std::min_element(gather.begin(), gather.end()));
}

// Whether overlapping the reduction with backward could help on this machine, without a per-layer
// hook in the models: compute standing in for the backward that could hide a bucket (28 products of
// (256, 256) × (256, 1024), 3.8 GFLOP, about one gpt_s block's backward on the 4 sequences of one
// of 2 ranks), then the gpt_s gradients' all-reduce
// (sequential), against MPI_Iallreduce of each bucket started first, MPI_Test after every
// product to let Open MPI progress it, and MPI_Wait at the end (overlapped: the best a bucket
// issued as soon as its gradients complete could do, since here every bucket starts at once).
void overlap(const MpiSession& mpi, int n) {
  Rng rng(1);
  Gpt<float> model(gpt_s(), rng);
  const std::size_t count = std::size_t(count_params(model)), bucket = std::size_t(8) << 18;  // 8 MiB of floats
  std::vector<float> flat(count, 1.0f);
  Mat<float> a = Mat<float>::Random(256, 256), b = Mat<float>::Random(256, 1024), c(256, 1024);
  const int products = 28;
  auto compute = [&](const std::function<void()>& after_each) {
    for (int i = 0; i < products; ++i) {
      gemm<float>(a, false, b, false, c, i > 0);
      after_each();
    }
  };
  std::vector<double> alone, sequential, overlapped;
  std::vector<MPI_Request> requests;
  for (int i = 0; i < n; ++i) {
    MPI_Barrier(mpi.comm());
    auto t0 = Clock::now();
    compute([] {});
    alone.push_back(seconds(t0, Clock::now()));
    MPI_Barrier(mpi.comm());
    t0 = Clock::now();
    compute([] {});
    for (std::size_t first = 0; first < count; first += bucket)
      MPI_Allreduce(MPI_IN_PLACE, flat.data() + first, int(std::min(bucket, count - first)), MPI_FLOAT, MPI_SUM,
                    mpi.comm());
    sequential.push_back(seconds(t0, Clock::now()));
    MPI_Barrier(mpi.comm());
    t0 = Clock::now();
    requests.clear();
    for (std::size_t first = 0; first < count; first += bucket) {
      requests.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, flat.data() + first, int(std::min(bucket, count - first)), MPI_FLOAT, MPI_SUM,
                     mpi.comm(), &requests.back());
    }
    compute([&] {
      int done = 0;
      MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
    });
    MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
    overlapped.push_back(seconds(t0, Clock::now()));
  }
  if (mpi.rank() == 0)
    std::printf("overlap ranks=%d threads=%d: median (min) compute alone %.2f (%.2f) ms, compute then all-reduce "
                "%.2f (%.2f) ms, MPI_Iallreduce progressed during the compute %.2f (%.2f) ms\n",
                mpi.world(), num_threads(), 1e3 * median(alone), 1e3 * *std::min_element(alone.begin(), alone.end()),
                1e3 * median(sequential), 1e3 * *std::min_element(sequential.begin(), sequential.end()),
                1e3 * median(overlapped), 1e3 * *std::min_element(overlapped.begin(), overlapped.end()));
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv);
  const std::string what = argc > 1 ? argv[1] : "gpt_s";
  const int n = argc > 2 ? std::atoi(argv[2]) : 20;
  const std::string mode = argc > 3 ? argv[3] : "";  // zero, overlap or nothing
  const std::size_t bucket_mib = argc > 4 ? std::size_t(std::atoi(argv[4])) : 8;
  try {
    Rng rng(1);
    if (mode == "ab-overlap" || mode == "ab-zero") {
      DataParallelOptions b;
      b.overlap = mode == "ab-overlap";
      b.shard_optimizer = mode == "ab-zero";
      b.bucket_bytes = bucket_mib << 20;
      const char* b_name = b.overlap ? "overlapped" : "ZeRO-1";
      if (what == "gpt_s") steps_ab(mpi, Gpt<float>(gpt_s(), rng), 8, 256, n, "gpt_s", b, b_name);
      else if (what == "lstm_s") steps_ab(mpi, LstmLm<float>(lstm_s(), rng), 32, 128, n, "lstm_s", b, b_name);
      else mpi.abort(2, "ab-overlap and ab-zero need gpt_s or lstm_s");
    } else if (what == "gpt_s") steps(mpi, Gpt<float>(gpt_s(), rng), 8, 256, n, "gpt_s", mode, bucket_mib);
    else if (what == "lstm_s") steps(mpi, LstmLm<float>(lstm_s(), rng), 32, 128, n, "lstm_s", mode, bucket_mib);
    else if (what == "allreduce") allreduce(mpi, n);
    else if (what == "overlap") overlap(mpi, n);
    else mpi.abort(2, "expected gpt_s, lstm_s, allreduce or overlap, got '" + what + "'");
  } catch (const std::exception& e) {
    mpi.abort(1, e.what());
  }
  return 0;
}
