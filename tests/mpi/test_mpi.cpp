// Data-parallel training on MPI (include/seqgen/distributed/), run by mpi_test.sh under
// `mpirun -np 2` and `-np 3`. Every rank also computes the single-process reference itself (one
// Trainer with the whole batch B), so each comparison is local:
//   - a step on N ranks with B/N sequences each equals a step with batch B: the loss, every
//     gradient after the reduction, and every parameter after the (clipped) update, for GPT, LSTM
//     and GRU in float through Trainer, and for the reduction itself in double;
//   - every rank holds bit-identical weights after every step;
//   - save on N ranks, resume on N ranks (bit-identical) and on 1 process (float tolerance);
//   - the same with the AdamW moments sharded (ZeRO-1, DataParallelOptions::shard_optimizer):
//     each rank's slice of the mean gradient and of the moments equals that part of one process's,
//     in float and in double, and its checkpoints resume on N, N − 1 and 1 ranks;
//   - with the all-reduce overlapped with backward, the same steps; and every model's backward
//     reports as final (GradientsReady) only gradients that are.
// `test_mpi --throw-on-rank R` instead throws on rank R while the others wait in a collective:
// mpi_test.sh checks that the job ends at once, non-zero, with the message.
#include "catch_compat.hpp"

#include <seqgen/core/parallel.hpp>
#include <seqgen/distributed/data_parallel.hpp>
#include <seqgen/optim/adam.hpp>
#include <seqgen/optim/clip.hpp>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <unistd.h>

using namespace seqgen;

int run_catch_session(int argc, char** argv);  // catch_runner.cpp

namespace {

const char* kText =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had "
    "everything before us, we had nothing before us, we were all going direct to Heaven.";

int g_rank = 0, g_world = 1;

TrainOptions options() {
  TrainOptions o;
  o.batch = 6;  // divides by 1, 2 and 3
  o.seq_len = 8;
  o.steps = 40;
  // AdamW moves a parameter by about lr whatever the size of its gradient, so a gradient near
  // zero whose float rounding differs between 1 and N ranks (sums split differently) moves its
  // parameter by a different fraction of lr: the parameters agree to about lr × 1e-4 (1.3e-6 at
  // lr = 1e-2 on 3 ranks, measured), within 1e-6 at this, the default, learning rate.
  o.lr = 1e-3;
  o.min_lr = 1e-4;
  o.warmup = 2;
  o.clip = 0.05;  // below the gradient norms of these models: clipping is on in every step
  o.seed = 11;
  return o;
}

template <typename Scalar, class Module>
std::vector<Scalar> flat(Module& m, bool grads) {
  std::vector<Scalar> all;
  m.for_each_param([&](Param<Scalar>& p) {
    const Mat<Scalar>& x = grads ? p.grad : p.value;
    all.insert(all.end(), x.data(), x.data() + x.size());
  });
  return all;
}

// max |a − b| / max |b| over the vector: the relative error of a tensor set, robust to the
// entries that are zero or cancel.
template <typename Scalar>
double relative_error(const std::vector<Scalar>& a, const std::vector<Scalar>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// True on every rank when every rank holds these exact bytes.
bool same_on_every_rank(const std::vector<float>& x) {
  std::vector<float> first(x);
  MPI_Bcast(first.data(), int(first.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  int same = std::memcmp(first.data(), x.data(), x.size() * sizeof(float)) == 0;
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return same != 0;
}

// The part of `all` (every parameter's values packed in for_each_param order) that a sharded
// optimizer's slice covers, in the slice's order.
template <typename Scalar>
std::vector<Scalar> slice_of(const ShardedAdamW<Scalar>& sharded, const std::vector<Scalar>& all) {
  std::vector<Scalar> part;
  sharded.for_each_piece([&](std::size_t first, std::size_t count, std::size_t) {
    part.insert(part.end(), all.begin() + std::ptrdiff_t(first), all.begin() + std::ptrdiff_t(first + count));
  });
  return part;
}

// Moment `which` (0: m, 1: v) of every parameter, packed in parameter order.
template <typename Scalar>
std::vector<Scalar> moments(Adam<Scalar>& optimizer, int which) {
  std::vector<Scalar> all;
  int i = 0;
  optimizer.for_each_state([&](const std::string&, Mat<Scalar>& m) {
    if (i++ % 2 == which) all.insert(all.end(), m.data(), m.data() + m.size());
  });
  return all;
}

std::vector<float> as_vector(const Mat<float>& m) { return std::vector<float>(m.data(), m.data() + m.size()); }

enum class Reduction { allreduce, zero, overlap };

// `steps` steps on one process with batch B and on every rank with B/N, compared after each;
// with ZeRO-1 each rank's gradient and moments are its slice of one process's.
template <typename Model>
void check_equals_one_process(const Model& fresh, int steps, Reduction how) {
  const bool shard_optimizer = how == Reduction::zero;
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.1);
  Trainer<Model> one(fresh, tok, data, options());
  Trainer<Model> replica(fresh, tok, data, options());
  DataParallelOptions dpo;
  dpo.shard_optimizer = shard_optimizer;
  dpo.overlap = how == Reduction::overlap;
  // Several buckets, parameters cut (ZeRO-1), or started at several points of backward (overlap).
  if (how != Reduction::allreduce) dpo.bucket_bytes = 2048;
  DataParallel<Model> dp(MPI_COMM_WORLD, replica, dpo);
  REQUIRE(dp.world() == g_world);
  const ShardedAdamW<float>* sharded = dp.sharded();
  REQUIRE((sharded != nullptr) == shard_optimizer);
  if (sharded) {
    const std::size_t P = std::size_t(count_params(one.model));
    CHECK(sharded->total_scalars() == P);
    CHECK(sharded->buckets() > 1);
    // About P/N each (each bucket is cut into N pieces of nearly equal length), and all of P in all.
    CHECK(sharded->slice_scalars() <= P / std::size_t(g_world) + sharded->buckets());
    long slices = long(sharded->slice_scalars());
    MPI_Allreduce(MPI_IN_PLACE, &slices, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    CHECK(std::size_t(slices) == P);
    CHECK(sharded->state_bytes() == 2 * sizeof(float) * sharded->slice_scalars());
    std::size_t whole = 0;  // the trainer's own AdamW keeps no moments
    replica.optimizer().for_each_state([&](const std::string&, const Mat<float>&) { ++whole; });
    CHECK(whole == 0);
  }
  std::vector<float> grads_one, grads_replica;
  one.on_gradients = [&](Model& m) { grads_one = flat<float>(m, true); };
  replica.on_gradients = [&](Model& m) {
    grads_replica = sharded ? as_vector(sharded->gradient()) : flat<float>(m, true);
  };
  for (int s = 0; s < steps; ++s) {
    const double loss_one = one.step(), loss_replica = replica.step();
    INFO("rank " << g_rank << " of " << g_world << ", step " << s + 1 << " reduction " << int(how));
    CHECK(std::abs(loss_replica - loss_one) <= 1e-6 * std::abs(loss_one));
    CHECK(relative_error(grads_replica, sharded ? slice_of(*sharded, grads_one) : grads_one) <= 1e-6);
    if (sharded) {
      CHECK(relative_error(as_vector(sharded->exp_avg()), slice_of(*sharded, moments(one.optimizer(), 0))) <= 1e-6);
      CHECK(relative_error(as_vector(sharded->exp_avg_sq()), slice_of(*sharded, moments(one.optimizer(), 1))) <= 1e-6);
    }
    CHECK(one.last_grad_norm() > options().clip);  // the clipping was exercised
    CHECK(std::abs(replica.last_grad_norm() - one.last_grad_norm()) <= 1e-6 * one.last_grad_norm());
    const auto params_one = flat<float>(one.model, false), params_replica = flat<float>(replica.model, false);
    CHECK(relative_error(params_replica, params_one) <= 1e-6);
    CHECK(same_on_every_rank(params_replica));
  }
  // A few buckets in all, not one call per tensor.
  if (how == Reduction::allreduce) CHECK(dp.reducer().bucket_calls() == std::size_t(steps));  // the models are small
  if (how == Reduction::overlap) CHECK(dp.reducer().bucket_calls() > std::size_t(3 * steps));
}

// The model's backward reports final gradients truthfully: at each ready(k), tensors k, k + 1, …
// already hold the values they have when backward returns; k decreases and ends at 0.
template <typename Model>
void check_gradients_ready(Model model, Index B, Index T) {
  Rng rng(2);
  std::vector<Token> inputs(std::size_t(B * T)), targets(inputs.size());
  for (auto& t : inputs) t = Token(rng.uniform_int(std::uint64_t(model.config.vocab_size)));
  for (auto& t : targets) t = Token(rng.uniform_int(std::uint64_t(model.config.vocab_size)));
  typename Model::Activations act;
  auto state = model.zero_state(B);
  zero_grad(model);
  model.forward(inputs, targets, B, T, state, act, rng, true);
  std::vector<std::pair<Index, std::vector<float>>> seen;  // (k, the gradients of tensors k, …)
  model.backward(inputs, targets, B, T, act, [&](Index first) {
    std::vector<float> suffix;
    Index k = 0;
    model.for_each_param([&](Param<float>& p) {
      if (k++ >= first) suffix.insert(suffix.end(), p.grad.data(), p.grad.data() + p.grad.size());
    });
    seen.emplace_back(first, std::move(suffix));
  });
  const std::vector<float> final_grads = flat<float>(model, true);
  REQUIRE(seen.size() == std::size_t(model.config.layers + 2));  // the head, each layer, the embeddings
  CHECK(seen.back().first == 0);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    INFO("call " << i << ": ready(" << seen[i].first << ")");
    if (i > 0) CHECK(seen[i].first < seen[i - 1].first);
    const std::vector<float>& suffix = seen[i].second;
    CHECK(suffix.size() > 0);
    CHECK(std::equal(suffix.begin(), suffix.end(), final_grads.end() - std::ptrdiff_t(suffix.size())));
  }
}

RecurrentConfig recurrent_config(CellKind cell) {
  RecurrentConfig cfg;
  cfg.vocab_size = Tokenizer::characters(kText).vocab_size();
  cfg.embedding = 8;
  cfg.hidden = 16;
  cfg.layers = 2;
  cfg.cell = cell;
  return cfg;
}

GptConfig gpt_config() {
  GptConfig cfg;
  cfg.vocab_size = Tokenizer::characters(kText).vocab_size();
  cfg.context = 8;
  cfg.channels = 16;
  cfg.layers = 2;
  cfg.heads = 2;
  return cfg;
}

std::string shared_path(const std::string& stem) {
  // The same name on every rank: rank 0's process id.
  int pid = int(::getpid());
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return (std::filesystem::temp_directory_path() / (stem + "_" + std::to_string(pid) + ".ckpt")).string();
}

// N steps on every rank, save (rank 0 writes), then M more: straight on, resumed on the same
// ranks (bit-identical) and resumed on one process (within float rounding; not with dropout,
// whose masks on N ranks are not those of one process). With `shard_optimizer` (ZeRO-1) the runs
// on N ranks shard the moments, and the checkpoint also resumes sharded on the first N − 1 ranks.
template <typename Model>
void check_resume(const Model& fresh, int N, int M, bool against_one_process, bool shard_optimizer) {
  set_num_threads(1);
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.1);
  const std::string path = shared_path("seqgen_test_mpi_resume");
  DataParallelOptions dpo;
  dpo.shard_optimizer = shard_optimizer;
  dpo.bucket_bytes = 4096;
  Trainer<Model> straight(fresh, tok, data, options());
  DataParallel<Model> dp(MPI_COMM_WORLD, straight, dpo);
  std::vector<double> straight_losses;
  for (int i = 0; i < N; ++i) straight_losses.push_back(straight.step());
  dp.save(path);
  MPI_Barrier(MPI_COMM_WORLD);
  for (int i = 0; i < M; ++i) straight_losses.push_back(straight.step());

  auto resumed = Trainer<Model>::load(path, data);
  auto alone = Trainer<Model>::load(path, data);  // every rank: one process with the whole batch
  auto fewer = Trainer<Model>::load(path, data);  // ZeRO-1 on the first N − 1 ranks
  MPI_Barrier(MPI_COMM_WORLD);
  if (g_rank == 0) std::filesystem::remove(path);
  DataParallel<Model> dp2(MPI_COMM_WORLD, resumed, dpo);
  std::vector<double> resumed_losses(straight_losses.begin(), straight_losses.begin() + N), alone_losses;
  for (int i = 0; i < M; ++i) {
    resumed_losses.push_back(resumed.step());
    alone_losses.push_back(alone.step());
  }
  INFO("rank " << g_rank << " of " << g_world << (shard_optimizer ? ", ZeRO-1" : ""));
  CHECK(resumed_losses == straight_losses);  // bit for bit
  CHECK(flat<float>(resumed.model, false) == flat<float>(straight.model, false));
  CHECK(same_on_every_rank(flat<float>(resumed.model, false)));
  if (!against_one_process) return;
  for (int i = 0; i < M; ++i) CHECK(std::abs(alone_losses[i] - straight_losses[N + i]) <= 1e-5 * straight_losses[N + i]);
  CHECK(relative_error(flat<float>(alone.model, false), flat<float>(straight.model, false)) <= 1e-5);
  if (!shard_optimizer || g_world < 2) return;
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, g_rank < g_world - 1 ? 0 : MPI_UNDEFINED, g_rank, &sub);
  if (sub == MPI_COMM_NULL) return;
  {
    DataParallel<Model> dp3(sub, fewer, dpo);
    for (int i = 0; i < M; ++i) CHECK(std::abs(fewer.step() - straight_losses[N + i]) <= 1e-5 * straight_losses[N + i]);
    CHECK(relative_error(flat<float>(fewer.model, false), flat<float>(straight.model, false)) <= 1e-5);
  }
  MPI_Comm_free(&sub);
}

// The reduction in double: forward and backward of this rank's slice, GradientAllReduce,
// clipping and AdamW, against the whole batch on one process, to 1e-12; with `shard_optimizer`
// ShardedAdamW (ZeRO-1) instead, for three steps, its slices compared.
template <typename Model>
void check_double(Model one, Index B, Index T, bool shard_optimizer) {
  set_num_threads(1);
  Model replica = one;
  Rng data_rng(5);
  std::vector<Token> inputs(std::size_t(B * T)), targets(inputs.size());
  for (auto& t : inputs) t = Token(data_rng.uniform_int(std::uint64_t(one.config.vocab_size)));
  for (auto& t : targets) t = Token(data_rng.uniform_int(std::uint64_t(one.config.vocab_size)));
  typename Model::Activations act_one, act_replica;
  Rng rng(1);
  const Index local = B / g_world;
  const TokenSpan in(inputs.data() + g_rank * local * T, local * T), tg(targets.data() + g_rank * local * T, local * T);
  AdamW<double> opt_one, opt_replica;
  opt_one.init_state(one);
  opt_replica.init_state(replica);
  GradientAllReduce<double> reduce(MPI_COMM_WORLD, 4096);  // small buckets: several calls
  std::optional<ShardedAdamW<double>> sharded;
  if (shard_optimizer) {
    sharded.emplace(MPI_COMM_WORLD, replica, 4096);  // several buckets, parameters cut
    sharded->take_state(opt_replica);
    CHECK(sharded->buckets() > 1);
  }
  for (int step = 0; step < (shard_optimizer ? 3 : 1); ++step) {
    INFO("rank " << g_rank << " of " << g_world << ", step " << step + 1 << (shard_optimizer ? ", ZeRO-1" : ""));
    auto state_one = one.zero_state(B);
    auto state_replica = replica.zero_state(local);
    zero_grad(one);
    zero_grad(replica);
    const double loss_one = one.forward(inputs, targets, B, T, state_one, act_one, rng, true);
    one.backward(inputs, targets, B, T, act_one);
    double loss_replica = replica.forward(in, tg, local, T, state_replica, act_replica, rng, true);
    replica.backward(in, tg, local, T, act_replica);
    double norm_replica;
    const std::vector<double> unclipped_one = flat<double>(one, true);
    const double norm_one = clip_grad_norm(one, 0.01);
    CHECK(norm_one > 0.01);
    if (sharded) {
      sharded->reduce(replica, loss_replica);
      norm_replica = sharded->clip_grad_norm(0.01);
      // Compared clipped: one's gradients are clipped already.
      const Mat<double>& g = sharded->gradient();
      CHECK(relative_error(std::vector<double>(g.data(), g.data() + g.size()), slice_of(*sharded, flat<double>(one, true))) <=
            1e-12);
    } else {
      reduce(replica, loss_replica);
      CHECK(reduce.bucket_calls() > 1);
      CHECK(relative_error(flat<double>(replica, true), unclipped_one) <= 1e-12);
      norm_replica = clip_grad_norm(replica, 0.01);
    }
    CHECK(std::abs(loss_replica - loss_one) <= 1e-12 * std::abs(loss_one));
    CHECK(std::abs(norm_replica - norm_one) <= 1e-12 * norm_one);
    opt_one.step(one);
    if (sharded) {
      sharded->step(replica, opt_replica);
      CHECK(opt_replica.steps() == opt_one.steps());
      for (int which = 0; which < 2; ++which) {
        const Mat<double>& mine = which == 0 ? sharded->exp_avg() : sharded->exp_avg_sq();
        CHECK(relative_error(std::vector<double>(mine.data(), mine.data() + mine.size()),
                             slice_of(*sharded, moments(opt_one, which))) <= 1e-12);
      }
    } else {
      opt_replica.step(replica);
    }
    CHECK(relative_error(flat<double>(replica, false), flat<double>(one, false)) <= 1e-12);
  }
  if (!sharded) return;
  // The moments gathered to rank 0 are one process's.
  AdamW<double> gathered;
  if (g_rank == 0) gathered.init_state(replica);
  sharded->gather_state(gathered, 0);
  if (g_rank == 0)
    for (int which = 0; which < 2; ++which)
      CHECK(relative_error(moments(gathered, which), moments(opt_one, which)) <= 1e-12);
}

}  // namespace

TEST_CASE("MPI: a GPT step on N ranks equals one process with the whole batch", "[mpi]") {
  for (Reduction how : {Reduction::allreduce, Reduction::zero, Reduction::overlap}) {
    Rng rng(3);
    check_equals_one_process(Gpt<float>(gpt_config(), rng), 4, how);
  }
}

TEST_CASE("MPI: LSTM and GRU steps on N ranks equal one process, carried state included", "[mpi]") {
  for (Reduction how : {Reduction::allreduce, Reduction::zero, Reduction::overlap}) {
    Rng rng(4);
    // 9 steps: the streams of this text wrap (the state is reset) within them.
    check_equals_one_process(LstmLm<float>(recurrent_config(CellKind::lstm), rng), 9, how);
    check_equals_one_process(GruLm<float>(recurrent_config(CellKind::gru), rng), 9, how);
  }
}

TEST_CASE("Models report their final gradients during backward (GradientsReady)", "[mpi][overlap]") {
  Rng rng(12);
  check_gradients_ready(Gpt<float>(gpt_config(), rng), 3, 8);
  GptConfig untied = gpt_config();
  untied.tie_weights = false;
  check_gradients_ready(Gpt<float>(untied, rng), 3, 8);
  check_gradients_ready(LstmLm<float>(recurrent_config(CellKind::lstm), rng), 3, 8);
  check_gradients_ready(GruLm<float>(recurrent_config(CellKind::gru), rng), 3, 8);
  check_gradients_ready(RnnLm<float>(recurrent_config(CellKind::rnn), rng), 3, 8);
}

TEST_CASE("MPI: the reduction in double matches one process to 1e-12", "[mpi]") {
  for (bool zero : {false, true}) {
    Rng rng(6);
    GptConfig g = gpt_config();
    check_double(Gpt<double>(g, rng), 6, 8, zero);
    check_double(LstmLm<double>(recurrent_config(CellKind::lstm), rng), 6, 8, zero);
    check_double(GruLm<double>(recurrent_config(CellKind::gru), rng), 6, 8, zero);
  }
}

TEST_CASE("MPI: resume on the same ranks is bit-identical, on one process within rounding", "[mpi][resume]") {
  for (bool zero : {false, true}) {
    Rng rng(8);
    check_resume(Gpt<float>(gpt_config(), rng), 3, 4, true, zero);
    check_resume(LstmLm<float>(recurrent_config(CellKind::lstm), rng), 5, 6, true, zero);
    GptConfig dropout = gpt_config();
    dropout.dropout = 0.2;  // the masks of each rank come from the seed, the batch number and the rank
    check_resume(Gpt<float>(dropout, rng), 3, 4, false, zero);
  }
}

TEST_CASE("MPI: with sharded moments, Trainer::save refuses and DataParallel::save gathers", "[mpi][errors]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.1);
  Rng rng(10);
  Trainer<Gpt<float>> t(Gpt<float>(gpt_config(), rng), tok, data, options());
  DataParallelOptions dpo;
  dpo.shard_optimizer = true;
  DataParallel<Gpt<float>> dp(MPI_COMM_WORLD, t, dpo);
  t.step();
  SEQGEN_THROWS_WITH(t.save("/nonexistent/never_written.ckpt"), ConfigError, "save with DataParallel::save");
}

TEST_CASE("MPI: a batch that does not divide by the ranks is a clear error", "[mpi][errors]") {
  const Tokenizer tok = Tokenizer::characters(kText);
  const TokenDataset data = TokenDataset::from_text(kText, tok, 0.1);
  Rng rng(9);
  TrainOptions o = options();
  o.batch = 7;
  Trainer<Gpt<float>> t(Gpt<float>(gpt_config(), rng), tok, data, o);
  if (g_world > 1) SEQGEN_THROWS_WITH(DataParallel<Gpt<float>>(MPI_COMM_WORLD, t), ConfigError, "must divide by");
  SEQGEN_THROWS_WITH(t.set_shard(3, 3), ConfigError, "need 0 <= rank < world");
}

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv, true);
  g_rank = mpi.rank();
  g_world = mpi.world();
  if (argc == 3 && std::string(argv[1]) == "--throw-on-rank") {
    // A failure on one rank while the others wait in a collective: the job must end at once.
    try {
      if (g_rank == std::atoi(argv[2])) throw std::runtime_error("cannot read 'shard-7.txt' (injected failure)");
      double x = 1;
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
      sleep(60);  // never reached while the failing rank aborts the job
      return 0;
    } catch (const std::exception& e) {
      mpi.abort(1, e.what());
    }
  }
  int failed = run_catch_session(argc, argv);
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return failed != 0 ? 1 : 0;
}
