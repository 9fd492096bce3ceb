// Threads, optional. seqgen shares work among threads when the build finds OpenMP (the
// seqgen::seqgen target then defines SEQGEN_OPENMP); without it every loop below runs serially and
// gives the same results. OpenMP sets how many threads (OMP_NUM_THREADS, set_num_threads) and tells
// whether a caller is inside its own parallel region; the threads themselves are seqgen's pool
// (thread_pool.hpp), whose waits give the core away on a busy machine.
// seqgen opens its thread teams through the helpers below: parallel_for (a loop whose items the
// threads claim in chunks), parallel_team (work split once that runs long on each thread: a
// recurrent layer's time loop) and parallel_team_barriers (phases that meet at barriers: a
// decoding step). The matrix products (gemm.hpp) claim slices as parallel_for does.
#pragma once

#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
#include <omp.h>
#define SEQGEN_THREADS 1
#include "seqgen/core/thread_pool.hpp"
#else
#define SEQGEN_THREADS 0
#endif

#include <algorithm>
#include <atomic>

#include "seqgen/core/tensor.hpp"

namespace seqgen {

namespace detail {
inline std::atomic<long> g_teams_opened{0};
inline void count_team() { g_teams_opened.fetch_add(1, std::memory_order_relaxed); }
}  // namespace detail

// How many thread teams seqgen has opened in this process. A diagnostic; tests/alloc/no_alloc_test.cpp
// counts them in a training or decoding step, and proves that no other code (Eigen's products
// included) starts an OpenMP team there.
inline long teams_opened() { return detail::g_teams_opened.load(std::memory_order_relaxed); }

// Whether work is worth a thread team: the one rule, used by every caller. Starting and joining a
// team costs microseconds (far more on a busy machine), so only work that keeps one thread busy for
// about 10 µs or more is shared. Callers count their work in one of two units:
//   worth_a_team(scalars)          element-wise work: the scalars a loop reads or writes (an add,
//                                  GELU, LayerNorm, an AdamW update, a softmax column);
//   worth_a_team_for_products(m)   the multiply-adds of a matrix product, which run about
//                                  kMacsPerScalar times faster from cache with FMA vectors.
constexpr double kParallelMinWork = 1 << 15;
constexpr double kMacsPerScalar = 8;
inline bool worth_a_team(double scalars) { return scalars >= kParallelMinWork; }
inline bool worth_a_team_for_products(double multiply_adds) {
  return multiply_adds >= kMacsPerScalar * kParallelMinWork;
}

// Number of threads seqgen's loops and matrix products use.
inline int num_threads() {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Sets the thread count for seqgen's loops and matrix products.
inline void set_num_threads(int n) {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  omp_set_num_threads(n < 1 ? 1 : n);
#else
  (void)n;
#endif
}

namespace detail {
// Runs body(t, n) on n threads of the pool, n = nt or fewer when the system refuses threads (the
// caller is t = 0), and returns true, or returns
// false when the work must stay on the calling thread: one thread, no OpenMP, the caller already
// inside a parallel region (seqgen's or its own OpenMP one), or the pool busy with another
// caller's job. The check is a C++ branch and never an OpenMP if clause, so nothing is allocated
// for a team of one.
template <class Body>
bool run_team(int nt, Body& body) {
#if SEQGEN_THREADS
  if (nt < 2 || omp_in_parallel() || !ThreadPool::instance().run(nt, body)) return false;
  count_team();
  return true;
#else
  (void)nt;
  (void)body;
  return false;
#endif
}
}  // namespace detail

// How many chunks per thread a shared loop or product is cut into. One chunk per thread would be
// the least overhead on a quiet machine; on a busy one a thread that shares its core runs at half
// speed or less, and with more chunks than threads the others take its part instead of waiting.
// Measured on 2 cores (2026-12-01, 2 threads, three rounds): quiet, gpt_s's training step took
// 244–252 ms with 1 chunk per thread, 258–259 with 2 and 262–271 with 4; with another CPU-bound
// process running, 2 threads were 5–8% slower than 1 with 1 chunk and 1–4% faster with 4.
constexpr Index kChunksPerThread = 4;

// Runs body(i) for i in [0, n): in chunks of consecutive items that the threads claim one after
// another when `parallel` holds (and a team can be opened, run_team above), else in order on the
// calling thread. body(i) must not depend on which thread runs it; the results are then the same
// for any thread count and any split.
template <class Body>
void parallel_for(Index n, bool parallel, Body&& body) {
  if (parallel && n > 1) {
    const int nt = num_threads();
    const Index chunk = std::max<Index>(1, n / (Index(nt) * kChunksPerThread));
    std::atomic<Index> next{0};
    auto claim_chunks = [&](int, int) {
      for (Index i0; (i0 = next.fetch_add(chunk, std::memory_order_relaxed)) < n;)
        for (Index i = i0, i1 = std::min(n, i0 + chunk); i < i1; ++i) body(i);
    };
    if (detail::run_team(nt, claim_chunks)) return;
  }
  for (Index i = 0; i < n; ++i) body(i);
}

// Runs body(t, nt) once on each thread t of a team of nt when `parallel` holds (and a team can be
// opened), else body(0, 1) on the calling thread. For work that splits itself once and then runs
// long on each part (a recurrent layer's whole time loop over its share of the sequences), where a
// parallel_for per step would start a team per step.
template <class Body>
void parallel_team(bool parallel, Body&& body) {
  if (parallel && detail::run_team(num_threads(), body)) return;
  body(0, 1);
}

// A thread team whose members meet at barriers, for work that runs as phases on every thread, each
// phase reading what the others wrote in the one before (a decoding step through a GPT: one team
// for all the blocks, where a parallel_for per product would start a team per product).
//   index, size   this thread, in [0, size)
//   barrier()     waits for the whole team; a no-op for a team of one
//   share(n)      this thread's contiguous part of n items (thread_share with step 1)
//   for_each(n)   body(i) for i = index, index + size, … (round-robin, for items whose cost grows
//                 with i), then a barrier
// A Team is made only by parallel_team_barriers below.
class Team {
 public:
  int index() const { return index_; }
  int size() const { return size_; }

  void barrier() const {
#if SEQGEN_THREADS
    if (barrier_) barrier_->wait(size_);
#endif
  }

  void share(Index n, Index& i0, Index& i1) const;

  template <class Body>
  void for_each(Index n, Body&& body) const {
    for (Index i = index_; i < n; i += size_) body(i);
    barrier();
  }

 private:
  template <class Body>
  friend void parallel_team_barriers(int threads, Body&& body);
#if SEQGEN_THREADS
  using Barrier = detail::TeamBarrier;
#else
  struct Barrier {};
#endif
  Team(int index, int size, Barrier* barrier) : index_(index), size_(size), barrier_(barrier) {}

  int index_ = 0, size_ = 1;
  Barrier* barrier_ = nullptr;  // the team's barrier; none for a team of one
};

// Runs body(team) on each thread of a team of `threads` (fewer if the system refuses threads), or
// body(team of one) on the calling thread when threads ≤ 1 or a team cannot be opened (run_team
// above).
template <class Body>
void parallel_team_barriers(int threads, Body&& body) {
#if SEQGEN_THREADS
  if (threads > 1) {
    Team::Barrier barrier;
    auto run = [&](int t, int nt) { body(Team(t, nt, &barrier)); };
    if (detail::run_team(threads, run)) return;
  }
#endif
  body(Team(0, 1, nullptr));
}

// Chooses between a team of `threads` and the calling thread alone, by measuring both, for work
// that repeats many times at about the same size: a decoding step. Such a team meets at barriers
// many times per run, microseconds apart. On a quiet machine that pays (2 threads decoded gpt_s
// 1.3–1.9× faster than 1); on a machine where another program runs, a barrier often waits for a
// thread that has lost its core, and the same team ran 1.8–2.8× slower than one thread (2026-12-01).
// Which holds changes with the load, so it is measured, not guessed:
//   every kPeriod runs, one run with the team that is not counted (it wakes the workers, asleep
//   since the last trial), then kTrial runs with the team and kTrial alone, each timed by the
//   caller; the rest of the period uses whichever took less time.
// At most kTrial + 1 of every kPeriod runs use the slower choice. The results do not depend on the
// choice (a team splits rows and (token, head) pairs, never a sum).
class TeamChoice {
 public:
  explicit TeamChoice(int threads) : threads_(threads) {}

  // The team size for the next run.
  int size() const { return threads_ > 1 && option() == kTeam ? threads_ : 1; }

  // The wall-clock seconds the run took.
  void record(double seconds) {
    const long r = runs_ % kPeriod;
    if (r >= 1 && r <= 2 * kTrial) {
      total_[option()] += seconds;
      if (r == 2 * kTrial) {
        best_ = total_[kAlone] < total_[kTeam] ? kAlone : kTeam;
        total_[kTeam] = total_[kAlone] = 0;
      }
    }
    ++runs_;
  }

 private:
  static constexpr int kTeam = 0, kAlone = 1;
  static constexpr long kTrial = 4, kPeriod = 512;

  int option() const {
    const long r = runs_ % kPeriod;  // 0: the warm-up, 1 … kTrial: team, then kTrial alone
    return r <= kTrial ? kTeam : r <= 2 * kTrial ? kAlone : best_;
  }

  int threads_;
  long runs_ = 0;
  int best_ = kTeam;
  double total_[2] = {0, 0};
};

// The share [i0, i1) of thread t of nt in n items, as equal as possible in multiples of `step`
// (the last share takes what is left; a share may be empty when there are more threads than steps).
inline void thread_share(Index n, int t, int nt, Index step, Index& i0, Index& i1) {
  const Index share = ((n + nt - 1) / nt + step - 1) / step * step;
  i0 = std::min(n, Index(t) * share);
  i1 = t + 1 == nt ? n : std::min(n, i0 + share);
}

inline void Team::share(Index n, Index& i0, Index& i1) const { thread_share(n, index_, size_, 1, i0, i1); }

// Runs body(r0, r1) on blocks of rows [r0, r1) that together cover [0, rows), split across the
// threads as parallel_for. Meant for sums along the rows of a column-major matrix (a bias
// gradient, Σ over tokens): each thread owns whole rows, and each row is summed over the columns in
// order, so the result is race-free and the same for any thread count.
template <class Body>
void parallel_row_blocks(Index rows, bool parallel, Body&& body) {
  constexpr Index kRows = 32;
  parallel_for((rows + kRows - 1) / kRows, parallel, [&](Index block) {
    const Index r0 = block * kRows;
    body(r0, std::min(rows, r0 + kRows));
  });
}

// g += the sum of each row of m over its columns, g: (m.rows(), 1): a bias gradient, Σ over the
// tokens. Split by parallel_row_blocks, so the result is the same for any thread count.
template <typename Scalar>
void add_row_sums(MatRef<Scalar> g, const ConstMatRef<Scalar>& m) {
  parallel_row_blocks(m.rows(), worth_a_team(m.size()), [&](Index r0, Index r1) {
    g.middleRows(r0, r1 - r0) += m.middleRows(r0, r1 - r0).rowwise().sum();
  });
}

// y.col(n) += v for every column n of y (adding a bias), column by column across the threads.
template <typename Scalar>
void add_to_columns(MatRef<Scalar> y, const ConstMatRef<Scalar>& v) {
  parallel_for(y.cols(), worth_a_team(y.size()), [&](Index n) { y.col(n) += v.col(0); });
}

// y += x, column by column across the threads.
template <typename Scalar>
void parallel_add(MatRef<Scalar> y, const ConstMatRef<Scalar>& x) {
  parallel_for(y.cols(), worth_a_team(y.size()), [&](Index n) { y.col(n) += x.col(n); });
}

// y = x, column by column across the threads.
template <typename Scalar>
void parallel_copy(MatRef<Scalar> y, const ConstMatRef<Scalar>& x) {
  parallel_for(y.cols(), worth_a_team(y.size()), [&](Index n) { y.col(n) = x.col(n); });
}

namespace detail {
// A per-thread scratch slot in [0, slots): the calling thread's index in the team of the job it runs
// (a loop seqgen split, parallel_for), or 0 outside a job.
inline int scratch_slot(Index slots) {
#if SEQGEN_THREADS
  const int t = team_index();
#else
  const int t = 0;
#endif
  return t < slots ? t : 0;
}
}  // namespace detail

}  // namespace seqgen
