#include <seqgen/seqgen.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace test_parallel {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

// Sets the thread count for one scope.
struct Threads {
  int saved = num_threads();
  explicit Threads(int n) { set_num_threads(n); }
  ~Threads() { set_num_threads(saved); }
};

}  // namespace

TEST_CASE("Parallel: parallel_for runs every index exactly once, for sizes around the chunking", "[parallel]") {
  Threads two(2);
  for (Index n : {1, 2, 3, 7, 8, 9, 63, 64, 65, 1000, 4097}) {
    std::vector<std::atomic<int>> seen(n);
    for (auto& s : seen) s = 0;
    parallel_for(n, true, [&](Index i) { seen[i].fetch_add(1); });
    for (Index i = 0; i < n; ++i) REQUIRE(seen[i].load() == 1);
  }
}

TEST_CASE("Parallel: a team's barrier orders its phases", "[parallel]") {
  Threads two(2);
  // Each phase, every thread writes its slot, then after the barrier reads every other slot: all
  // must hold the value of this phase. 200 phases, so both the spin and the sleep paths run.
  constexpr int kPhases = 200;
  std::vector<int> slots(2, -1);
  std::atomic<int> wrong{0}, members{0};
  parallel_team_barriers(2, [&](const Team& team) {
    members.fetch_add(1);
    for (int phase = 0; phase < kPhases; ++phase) {
      slots[team.index()] = phase;
      team.barrier();
      for (int t = 0; t < team.size(); ++t)
        if (slots[t] != phase) wrong.fetch_add(1);
      team.barrier();
    }
  });
  CHECK(wrong.load() == 0);
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  CHECK(members.load() == 2);
#endif
}

TEST_CASE("Parallel: an exception on any thread of a team reaches the caller", "[parallel]") {
  Threads two(2);
  for (int thrower : {0, 1}) {
    CHECK_THROWS_WITH(parallel_team(true,
                                    [&](int t, int nt) {
                                      if (t == thrower || nt == 1) throw std::runtime_error("from a member");
                                    }),
                      "from a member");
    // The pool still works afterwards.
    std::atomic<int> runs{0};
    parallel_team(true, [&](int, int) { runs.fetch_add(1); });
    CHECK(runs.load() >= 1);
  }
}

TEST_CASE("Parallel: nested and concurrent calls run on the caller's thread and give the same products",
          "[parallel]") {
  Threads two(2);
  const Mat<float> a = seqgen_test::random_mat(96, 80, 1).cast<float>();
  const Mat<float> b = seqgen_test::random_mat(80, 120, 2).cast<float>();
  Mat<float> expected(96, 120);
  gemm<float>(a, false, b, false, expected, false);
  // From inside a team: each member's product runs on its own thread.
  std::vector<Mat<float>> nested(2, Mat<float>(96, 120));
  parallel_team(true, [&](int t, int) { gemm<float>(a, false, b, false, nested[t], false); });
  CHECK(nested[0] == expected);
  // From three threads of the caller's program at once: one gets the pool, the others run alone.
  std::vector<Mat<float>> concurrent(3, Mat<float>(96, 120));
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&, c] {
      for (int k = 0; k < 20; ++k) gemm<float>(a, false, b, false, concurrent[c], false);
    });
  for (std::thread& t : callers) t.join();
  for (const Mat<float>& m : concurrent) CHECK(m == expected);
}

TEST_CASE("Parallel: after a fork, the child's loops run on its one thread and finish", "[parallel]") {
  Threads two(2);
  std::atomic<long> sum{0};
  parallel_for(1000, true, [&](Index i) { sum.fetch_add(i); });  // the workers exist now
  REQUIRE(sum.load() == 999 * 1000 / 2);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::atomic<long> child_sum{0};
    parallel_for(1000, true, [&](Index i) { child_sum.fetch_add(i); });
    _exit(child_sum.load() == 999 * 1000 / 2 ? 0 : 1);
  }
  int status = -1;
  // A child that waited for the parent's workers would never end: give it 10 s.
  for (int waited = 0; waited < 1000 && waitpid(pid, &status, WNOHANG) == 0; ++waited) usleep(10000);
  if (status == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // And the parent's pool still works.
  sum = 0;
  parallel_for(1000, true, [&](Index i) { sum.fetch_add(i); });
  CHECK(sum.load() == 999 * 1000 / 2);
}

TEST_CASE("Parallel: TeamChoice uses whichever of the team and one thread measured faster, and measures again",
          "[parallel]") {
  TeamChoice choice(4);
  // The first trial: a team then alone. Alone measures faster: the rest of the period runs alone.
  int team_runs = 0, alone_runs = 0;
  for (int run = 0; run < 512; ++run) {
    const int size = choice.size();
    (size == 4 ? team_runs : alone_runs) += 1;
    choice.record(size == 4 ? 2e-3 : 1e-3);
  }
  CHECK(team_runs == 5);  // only the trial and its warm-up run
  CHECK(alone_runs == 507);
  // The load goes away: the team is faster now. The next period's trial finds it.
  team_runs = alone_runs = 0;
  for (int run = 0; run < 512; ++run) {
    const int size = choice.size();
    (size == 4 ? team_runs : alone_runs) += 1;
    choice.record(size == 4 ? 0.5e-3 : 1e-3);
  }
  CHECK(alone_runs == 4);
  CHECK(team_runs == 508);
  // One thread: never a team.
  TeamChoice one(1);
  for (int run = 0; run < 20; ++run) {
    CHECK(one.size() == 1);
    one.record(1e-3);
  }
}

TEST_CASE("Parallel: a GPT decoder gives the same logits whether its steps run on a team or alone", "[parallel]") {
  GptConfig c;
  c.vocab_size = 50;
  c.context = 64;
  c.channels = 512;  // products worth a team
  c.layers = 2;
  c.heads = 8;
  Rng rng(3);
  const Gpt<float> model(c, rng);
  Mat<float> team_logits, alone_logits;
  auto decode = [&](int threads, Mat<float>& out) {
    Threads n(threads);
    GptDecoder<float> decoder(model, 2);
    Mat<float> logits = decoder.prefill({{1, 2, 3}, {4}});
    out.resize(c.vocab_size, 0);
    // 600 steps with the window sliding: several TeamChoice periods, team and alone both used.
    for (int k = 0; k < 600; ++k) {
      const std::vector<Token> next = {Token(k % 50), Token((7 * k) % 50)};
      logits = decoder.step(TokenSpan(next.data(), 2));
      if (k % 50 == 0) {
        out.conservativeResize(c.vocab_size, out.cols() + 2);
        out.rightCols(2) = logits;
      }
    }
  };
  decode(2, team_logits);
  decode(1, alone_logits);
  CHECK(team_logits == alone_logits);
}

}  // namespace test_parallel
