// The threads behind seqgen's loops and matrix products (parallel.hpp): a pool of worker threads
// that start once and then run one job after another, handed to them through an atomic word.
//
// Why not an OpenMP parallel region per job. On a machine where another program also runs, a
// team's threads share cores with it, and libgomp's waiting threads spin (GOMP_SPINCOUNT, about
// 300,000 iterations by default) at every barrier and between regions. A spinning thread takes the
// core from the one it waits for, so with one competing process a 2-thread training step on 2
// cores ran 1.3–1.5× slower than 1 thread (measured 2026-12-01; OMP_WAIT_POLICY=passive, which
// sleeps at once, removed most of the loss but makes every barrier of a decoding step a system
// call). The pool below waits the way the measurements asked for:
//   - a waiting thread spins for at most kSpinMicros (a quiet machine's barrier, most of a
//     decoding step's, is over by then), then sleeps on a futex and gives its core away;
//   - a sleeping thread is woken only when there is something to do (the waker checks a count of
//     sleepers first, so a quiet machine makes no system call per job).
// Work is shared dynamically by the callers (parallel.hpp): a thread that runs slower because it
// shares its core takes fewer chunks instead of holding the others at the end.
//
// One job at a time. A job runs body(t, nt) on nt threads: the calling thread is t = 0 and the
// workers 1 … nt − 1. A second caller that finds the pool busy (another thread of the user's program
// in a seqgen call), and any call from inside a job, runs on its own thread instead (run returns
// false). An exception thrown by a worker's body is caught and rethrown to the caller once every
// thread has finished the job.
//
// A child process made by fork() has none of the workers: there every job runs on the caller.
//
// Memory: the workers are made on the first job that needs them and when a job needs more; a
// job itself allocates nothing. When the system refuses a thread (ulimit -u, a memory limit), the
// jobs run on the threads there are, and on the caller alone when there are none.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <exception>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace seqgen {
namespace detail {

// How long a waiting thread spins before it sleeps. A barrier of a decoding step on a quiet
// machine is met within a few microseconds; sleeping on a futex and being woken costs two system
// calls and a reschedule. 50 µs of spinning keeps a quiet machine's waits free of system calls and
// bounds what a busy machine loses.
// (With one competing process, 5, 50 and 200 µs gave the same step times within the noise.)
constexpr long kSpinMicros = 50;

inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A 32-bit word that threads can wait on until it changes.
class WaitWord {
 public:
  explicit WaitWord(uint32_t v = 0) : word_(v) {}

  uint32_t load() const { return word_.load(std::memory_order_acquire); }

  void store(uint32_t v) {
    word_.store(v, std::memory_order_seq_cst);
    wake();
  }
  // Returns the value before.
  uint32_t fetch_add(uint32_t v) {
    const uint32_t old = word_.fetch_add(v, std::memory_order_seq_cst);
    wake();
    return old;
  }
  // fetch_sub without waking: for counts that a waiter only needs to see reach zero (see
  // ThreadPool::finish). seq_cst as store is, for the argument in wait_while.
  uint32_t fetch_sub_quiet(uint32_t v) { return word_.fetch_sub(v, std::memory_order_seq_cst); }
  void wake_all() { wake(); }

  // Returns the word once it is not `value`: spins for up to kSpinMicros, then sleeps.
  uint32_t wait_while(uint32_t value) {
    uint32_t now = load();
    if (now != value) return now;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
    for (int i = 1;; ++i) {
      cpu_pause();
      if ((now = load()) != value) return now;
      if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
    }
    for (;;) {
      // The sleeper count is raised before the word is read again and the kernel checks the word
      // once more as it puts the thread to sleep, so a store in between is never missed: either
      // this thread sees the new value, or the storer sees the sleeper and wakes it (both seq_cst).
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (word_.load(std::memory_order_seq_cst) == value) sleep(value);
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      if ((now = load()) != value) return now;
    }
  }

 private:
  void wake() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#endif
  }
  void sleep(uint32_t value) {
#if defined(__linux__)
    // Returns at a wake, a signal, or at once when the word is no longer `value`.
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
#else
    std::this_thread::yield();
#endif
  }

  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "a futex is a plain 32-bit word");
  std::atomic<uint32_t> word_;
  std::atomic<uint32_t> sleepers_{0};
};

// The index of the calling thread in the job it runs (0 outside a job, and for the caller).
inline int& team_index() {
  static thread_local int index = 0;
  return index;
}
// Whether the calling thread is running a job of the pool (as its caller or as a worker).
inline bool& in_job() {
  static thread_local bool in = false;
  return in;
}

class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() { stop_workers(); }

  // Runs body(t, n) for t = 0 … n − 1, t = 0 on the calling thread, and returns true once all
  // have returned. n is nt, or fewer when the system refuses to create more threads (a process
  // or memory limit). Returns false without running anything when the pool is busy, the caller is
  // inside a job or no second thread can be had (the caller then runs the work itself).
  template <class Body>
  bool run(int nt, Body& body) {
    if (nt < 2 || in_job() || forked_) return false;
    std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    if (int(workers_.size()) < nt - 1 && !refused_) start_workers(nt - 1);
    nt = std::min(nt, int(workers_.size()) + 1);
    if (nt < 2) return false;
    fn_ = [](void* ctx, int t, int n) { (*static_cast<Body*>(ctx))(t, n); };
    ctx_ = &body;
    team_size_ = nt;
    error_ = nullptr;
    pending_.store(uint32_t(workers_.size()));  // every worker acknowledges every job
    job_.fetch_add(1);                          // publishes fn_, ctx_, team_size_ (release)
    in_job() = true;
    std::exception_ptr mine;
    try {
      body(0, nt);
    } catch (...) {
      mine = std::current_exception();
    }
    in_job() = false;
    for (uint32_t left; (left = pending_.load()) != 0;) pending_.wait_while(left);
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  ThreadPool() { pthread_atfork(nullptr, nullptr, [] { instance().forget_workers(); }); }

  // In the child of a fork only the forking thread exists: the workers' handles are dropped
  // without a join (they name threads of the parent), and every job runs on the calling thread.
  void forget_workers() {
    forked_ = true;
    for (std::thread& w : workers_) new (&w) std::thread();  // a handle of no thread, safe to destroy
    workers_.clear();
  }

  // Starts n workers; stops at the first the system refuses (and asks for no more after that).
  void start_workers(int n) {
    stop_workers();
    stopping_ = false;
    const uint32_t seen = job_.load();
    try {
      for (int i = 0; i < n; ++i) workers_.emplace_back([this, i, seen] { work(i + 1, seen); });
    } catch (const std::system_error&) {
      refused_ = true;
    }
  }

  void stop_workers() {
    if (workers_.empty()) return;
    stopping_ = true;
    job_.fetch_add(1);
    for (std::thread& w : workers_) w.join();
    workers_.clear();
  }

  void work(int t, uint32_t seen) {
    in_job() = true;
    for (;;) {
      seen = job_.wait_while(seen);
      if (stopping_) return;
      if (t < team_size_) {
        team_index() = t;
        try {
          fn_(ctx_, t, team_size_);
        } catch (...) {
          std::lock_guard<std::mutex> guard(error_lock_);
          if (!error_) error_ = std::current_exception();
        }
        team_index() = 0;
      }
      finish();
    }
  }

  // The last worker to finish wakes the caller, if it went to sleep.
  void finish() {
    if (pending_.fetch_sub_quiet(1) == 1) pending_.wake_all();
  }

  std::mutex busy_;  // held by the caller for the whole job
  std::vector<std::thread> workers_;
  WaitWord job_;      // counts jobs; a change tells the workers to run the current one
  WaitWord pending_;  // workers that have not finished the current job
  // The current job, written by the caller before job_ changes and read by the workers after.
  void (*fn_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  int team_size_ = 1;
  bool stopping_ = false;
  bool refused_ = false;  // the system refused a thread: use the workers there are
  bool forked_ = false;   // this process is the child of a fork: no workers, ever
  std::mutex error_lock_;
  std::exception_ptr error_;
};

// A barrier for the nt threads of one job: spins, then sleeps, as the pool's waits do. The last
// thread to arrive resets the count and releases the others.
class TeamBarrier {
 public:
  // nt: the size of the team, the same on every thread.
  void wait(int nt) {
    const uint32_t phase = phase_.load();
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == uint32_t(nt)) {
      arrived_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1);
    } else {
      phase_.wait_while(phase);
    }
  }

 private:
  std::atomic<uint32_t> arrived_{0};
  WaitWord phase_;
};

}  // namespace detail
}  // namespace seqgen
