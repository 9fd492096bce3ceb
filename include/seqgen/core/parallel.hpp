// OpenMP, optional. seqgen uses OpenMP when the build finds it (the seqgen::seqgen target then
// defines SEQGEN_OPENMP); without it every loop below runs serially and gives the same results.
// seqgen opens its thread teams through the helpers below: parallel_for (a loop, split once),
// parallel_team (work split once that runs long on each thread: the GEMM slices, a recurrent
// layer's time loop) and parallel_team_barriers (phases that meet at barriers: a decoding step).
#pragma once

#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
#include <omp.h>
#define SEQGEN_PRAGMA(x) _Pragma(#x)
#define SEQGEN_OMP(x) SEQGEN_PRAGMA(omp x)
#else
#define SEQGEN_OMP(x)
#endif

#include <algorithm>
#include <atomic>

#include "seqgen/core/tensor.hpp"

namespace seqgen {

namespace detail {
inline std::atomic<long> g_teams_opened{0};
inline void count_team() { g_teams_opened.fetch_add(1, std::memory_order_relaxed); }
}  // namespace detail

// How many thread teams seqgen has opened in this process. A diagnostic, and the proof in
// tests/alloc/no_alloc_test.cpp that no other code (Eigen's products included) opens a team
// during a training or decoding step: the OpenMP runtime's count there equals this one.
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

// Runs body(i) for i in [0, n): split in contiguous blocks across the threads when `parallel`
// holds and the caller is not already in a parallel region, else in order on the calling thread.
// The choice is a C++ branch rather than an OpenMP if clause because libgomp allocates (and frees)
// a team for every parallel region that runs on one thread, which a training step must not do.
template <class Body>
void parallel_for(Index n, bool parallel, Body&& body) {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  if (parallel && n > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
    detail::count_team();
    SEQGEN_OMP(parallel for schedule(static))
    for (Index i = 0; i < n; ++i) body(i);
    return;
  }
#else
  (void)parallel;
#endif
  for (Index i = 0; i < n; ++i) body(i);
}

// Runs body(t, nt) once on each thread t of a team of nt when `parallel` holds and the caller is
// not already in a parallel region, else body(0, 1) on the calling thread. For work that splits
// itself once and then runs long on each part (a recurrent layer's whole time loop over its share
// of the sequences), where a parallel_for per step would start a team per step.
template <class Body>
void parallel_team(bool parallel, Body&& body) {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  if (parallel && omp_get_max_threads() > 1 && !omp_in_parallel()) {
    detail::count_team();
    SEQGEN_OMP(parallel)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#else
  (void)parallel;
#endif
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
    if (synced_) {
      SEQGEN_OMP(barrier)
    }
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
  Team(int index, int size, bool synced) : index_(index), size_(size), synced_(synced) {}

  int index_ = 0, size_ = 1;
  bool synced_ = false;  // a team seqgen opened, whose barrier binds to it
};

// Runs body(team) on each thread of a team of at most `threads` (OpenMP may give fewer), or
// body(team of one) on the calling thread when threads ≤ 1 or the caller is already in a parallel
// region. In that last case the team of one never meets an OpenMP barrier: an orphaned barrier
// would bind to the caller's own team, whose other threads are not running this body. As for
// parallel_for, the choice is a C++ branch and not an OpenMP if clause.
template <class Body>
void parallel_team_barriers(int threads, Body&& body) {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  if (threads > 1 && !omp_in_parallel()) {
    detail::count_team();
    SEQGEN_OMP(parallel num_threads(threads))
    body(Team(omp_get_thread_num(), omp_get_num_threads(), true));
    return;
  }
#else
  (void)threads;
#endif
  body(Team(0, 1, false));
}

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
// Index of the calling thread in the current OpenMP team (0 without OpenMP).
inline int omp_thread_index() {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// A per-thread scratch slot in [0, slots): the thread's index in the team of a loop seqgen split
// (parallel_for), or 0 when the loop ran serially inside a caller's own parallel region, where the
// thread index belongs to the caller's team but the object is used by that one thread only.
inline int scratch_slot(Index slots) {
  const int t = omp_thread_index();
  return t < slots ? t : 0;
}

// Number of threads in the current OpenMP team (1 outside a parallel region or without OpenMP).
inline int omp_team_size() {
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}
}  // namespace detail

}  // namespace seqgen
