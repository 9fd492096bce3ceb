// Data-parallel training steps on this machine (docs/distributed.md, "Measured"): the time of one
// Trainer::step of TrainStep/gpt_s and TrainStep/lstm_s (bench/bench_train_step.cpp's configs and
// global batches), with the part spent in the gradient all-reduce, and the time of one all-reduce
// of the gpt_s gradients alone.
//
//   OMP_NUM_THREADS=2 seqgen_mpi_bench gpt_s 20                 one process, 2 threads
//   OMP_NUM_THREADS=1 mpirun -np 2 seqgen_mpi_bench gpt_s 20    2 ranks, 1 thread each
//   mpirun -np 2 seqgen_mpi_bench allreduce 200                 MPI_Allreduce of the gpt_s gradients
//
// Rank 0 prints one line: the median and the minimum over the steps.
#include <seqgen/distributed/data_parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
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
void steps(const MpiSession& mpi, Model model, Index B, Index T, int n, const char* name) {
  const TokenDataset data = random_tokens(1 << 18);
  Trainer<Model> trainer(std::move(model), tokenizer65(), data, options(B, T));
  std::optional<DataParallel<Model>> dp;
  double reduce_time = 0;
  if (mpi.world() > 1) {
    dp.emplace(mpi.comm(), trainer);
    auto reduce = std::move(trainer.reduce_gradients);
    trainer.reduce_gradients = [&, reduce](Model& m, double& loss) {
      const auto t0 = Clock::now();
      reduce(m, loss);
      reduce_time += seconds(t0, Clock::now());
    };
  }
  trainer.step();  // sizes every workspace
  std::vector<double> times, reduces;
  for (int i = 0; i < n; ++i) {
    reduce_time = 0;
    if (dp) MPI_Barrier(mpi.comm());  // every rank starts the step together
    const auto t0 = Clock::now();
    trainer.step();
    times.push_back(seconds(t0, Clock::now()));
    reduces.push_back(reduce_time);
  }
  if (mpi.rank() == 0)
    std::printf("%s ranks=%d threads=%d B=%lld T=%lld: step median %.2f ms (min %.2f), all-reduce median %.2f ms "
                "(%.1f%%), %.0f tokens/s, gradient %.2f MB\n",
                name, mpi.world(), num_threads(), (long long)B, (long long)T, 1e3 * median(times),
                1e3 * *std::min_element(times.begin(), times.end()), 1e3 * median(reduces),
                100 * median(reduces) / median(times), double(B * T) / median(times),
                4e-6 * double(count_params(trainer.model)));
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
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv);
  const std::string what = argc > 1 ? argv[1] : "gpt_s";
  const int n = argc > 2 ? std::atoi(argv[2]) : 20;
  try {
    Rng rng(1);
    if (what == "gpt_s") steps(mpi, Gpt<float>(gpt_s(), rng), 8, 256, n, "gpt_s");
    else if (what == "lstm_s") steps(mpi, LstmLm<float>(lstm_s(), rng), 32, 128, n, "lstm_s");
    else if (what == "allreduce") allreduce(mpi, n);
    else mpi.abort(2, "expected gpt_s, lstm_s or allreduce, got '" + what + "'");
  } catch (const std::exception& e) {
    mpi.abort(1, e.what());
  }
  return 0;
}
