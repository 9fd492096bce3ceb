// Sampling from fixed logits (greedy, temperature, top-k, top-p, min-p, repetition penalty), and
// stop strings over streamed text.
#include <seqgen/generate/sampler.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace test_sampler {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

TEST_CASE("Sampler: temperature 0 is greedy, and a tiny temperature agrees", "[sampler]") {
  Vec<float> logits(5);
  logits << 0.1f, 2.0f, -1.0f, 1.9f, 0.0f;
  Rng rng(1);
  Sampler greedy(SamplingOptions{0.0, 0});
  Sampler cold(SamplingOptions{1e-4, 0});
  for (int i = 0; i < 200; ++i) {
    REQUIRE(greedy.sample(logits, rng) == 1);
    REQUIRE(cold.sample(logits, rng) == 1);
  }
}

TEST_CASE("Sampler: top-k never leaves the k most likely tokens", "[sampler]") {
  Vec<double> logits(6);
  logits << 0.5, 0.4, 3.0, 0.3, 2.5, 0.45;
  Rng rng(2);
  Sampler top2(SamplingOptions{5.0, 2});  // a high temperature flattens the rest, but they are cut
  int counts[6] = {0};
  for (int i = 0; i < 4000; ++i) ++counts[top2.sample(logits, rng)];
  REQUIRE(counts[2] + counts[4] == 4000);
  REQUIRE(counts[2] > 0);
  REQUIRE(counts[4] > 0);
}

TEST_CASE("Sampler: frequencies follow softmax(logits / T) (chi-square, fixed seed)", "[sampler]") {
  Vec<double> logits(4);
  logits << 1.0, 0.0, -1.0, 0.5;
  const double T = 0.7;
  double z = 0;
  for (int v = 0; v < 4; ++v) z += std::exp(logits(v) / T);
  Rng rng(3);
  Sampler sampler(SamplingOptions{T, 0});
  const int draws = 20000;
  int counts[4] = {0};
  for (int i = 0; i < draws; ++i) ++counts[sampler.sample(logits, rng)];
  double chi2 = 0;
  for (int v = 0; v < 4; ++v) {
    const double expected = draws * std::exp(logits(v) / T) / z;
    chi2 += (counts[v] - expected) * (counts[v] - expected) / expected;
  }
  // 3 degrees of freedom: P(chi² > 16.27) = 0.001.
  REQUIRE(chi2 < 16.27);
}

TEST_CASE("Sampler: the same seed gives the same draws; bad options are errors", "[sampler]") {
  Vec<float> logits = Vec<float>::LinSpaced(10, -1.0f, 1.0f);
  Sampler a(SamplingOptions{1.0, 0}), b(SamplingOptions{1.0, 0});
  Rng ra(9), rb(9);
  for (int i = 0; i < 100; ++i) REQUIRE(a.sample(logits, ra) == b.sample(logits, rb));
  SEQGEN_THROWS_WITH(Sampler(SamplingOptions{-0.5, 0}), ConfigError, "temperature must be >= 0, got -0.5");
  SEQGEN_THROWS_WITH(Sampler(SamplingOptions{1.0, -2}), ConfigError, "top_k must be >= 0, got -2");
}

// ---------------------------------------------------------------------------------------------
// llama.cpp-style controls. The references below are written from the definitions, independently
// of Sampler: a full sort, explicit softmaxes, plain loops.

namespace {

using seqgen::Index;

// Token ids, most likely first (ties: lower id first).
std::vector<int> by_likelihood(const std::vector<double>& l) {
  std::vector<int> ids(l.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = int(i);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return l[a] > l[b]; });
  return ids;
}

// The distribution a draw must follow: truncations at temperature 1 in the order top-k, top-p,
// min-p, then softmax(l / T) renormalised over what is left. Zero outside the kept set.
std::vector<double> reference_probs(const std::vector<double>& l, double T, Index top_k, double top_p, double min_p) {
  std::vector<int> kept = by_likelihood(l);
  if (top_k > 0 && top_k < Index(kept.size())) kept.resize(top_k);
  auto softmax1 = [&](const std::vector<int>& ids) {
    std::vector<double> p;
    double z = 0;
    for (int id : ids) z += std::exp(l[id]);
    for (int id : ids) p.push_back(std::exp(l[id]) / z);
    return p;
  };
  if (top_p < 1) {
    const std::vector<double> p = softmax1(kept);
    double cum = 0;
    std::size_t n = 0;
    while (n < kept.size() && cum < top_p) cum += p[n++];
    // The test is only meaningful when p is not on a boundary, where rounding could go either way.
    REQUIRE(std::abs(cum - top_p) > 1e-6);
    REQUIRE(std::abs(cum - p[n - 1] - top_p) > 1e-6);
    kept.resize(n);
  }
  if (min_p > 0) {
    const std::vector<double> p = softmax1(kept);
    std::vector<int> left;
    for (std::size_t i = 0; i < kept.size(); ++i)
      if (p[i] >= min_p * p[0]) left.push_back(kept[i]);
    kept = left;
  }
  std::vector<double> q(l.size(), 0.0);
  double z = 0;
  for (int id : kept) z += std::exp(l[id] / T);
  for (int id : kept) q[id] = std::exp(l[id] / T) / z;
  return q;
}

std::vector<double> random_logits(int V, std::uint64_t seed, double scale) {
  seqgen::Rng rng(seed);
  std::vector<double> l(V);
  for (double& x : l) x = rng.uniform(-scale, scale);
  return l;
}

Vec<double> to_vec(const std::vector<double>& l) { return Eigen::Map<const Vec<double>>(l.data(), Index(l.size())); }

// Draws `draws` tokens and checks them against q: never a token with q = 0, and Pearson's
// chi-square over the tokens with q > 0 below its 0.1% critical value (Wilson-Hilferty
// approximation of the chi-square quantile, good to ~1% for these degrees of freedom).
void require_follows(Sampler& sampler, const std::vector<double>& l, const std::vector<double>& q, std::uint64_t seed,
                     int draws = 20000, seqgen::TokenSpan recent = {}) {
  const Vec<double> logits = to_vec(l);
  std::vector<int> counts(l.size(), 0);
  Rng rng(seed);
  for (int i = 0; i < draws; ++i) ++counts[sampler.sample(logits, rng, recent)];
  double chi2 = 0;
  int cells = 0;
  for (std::size_t v = 0; v < l.size(); ++v) {
    INFO("token " << v << " q " << q[v] << " count " << counts[v]);
    if (q[v] == 0) {
      REQUIRE(counts[v] == 0);
      continue;
    }
    const double expected = draws * q[v];
    chi2 += (counts[v] - expected) * (counts[v] - expected) / expected;
    ++cells;
  }
  REQUIRE(cells >= 2);                      // a single kept token would make the test vacuous
  const double df = cells - 1, z = 3.0902;  // z: the 99.9% normal quantile
  const double a = 2.0 / (9.0 * df);
  const double critical = df * std::pow(1.0 - a + z * std::sqrt(a), 3);
  INFO("chi2 " << chi2 << " df " << df << " critical " << critical);
  REQUIRE(chi2 < critical);
}

SamplingOptions options(double T, Index top_k, double top_p, double min_p, double penalty = 1.0, Index last_n = 64) {
  SamplingOptions o;
  o.temperature = T;
  o.top_k = top_k;
  o.top_p = top_p;
  o.min_p = min_p;
  o.repeat_penalty = penalty;
  o.repeat_last_n = last_n;
  return o;
}

}  // namespace

TEST_CASE("Sampler: top-k keeps exactly the k most likely, with renormalised frequencies", "[sampler]") {
  const std::vector<double> l = random_logits(20, 11, 2.0);
  for (Index k : {1, 3, 7}) {
    INFO("k " << k);
    Sampler s(options(1.5, k, 1.0, 0.0));
    const std::vector<double> q = reference_probs(l, 1.5, k, 1.0, 0.0);
    int kept = 0;
    for (double x : q) kept += x > 0;
    REQUIRE(kept == k);
    if (k == 1) {
      // Only the argmax is left: every draw is it, whatever the temperature.
      Rng rng(5);
      for (int i = 0; i < 100; ++i) REQUIRE(s.sample(to_vec(l), rng) == by_likelihood(l)[0]);
    } else {
      require_follows(s, l, q, 100 + std::uint64_t(k));
    }
  }
}

TEST_CASE("Sampler: top-p keeps the smallest set whose mass reaches p", "[sampler]") {
  const std::vector<double> l = random_logits(16, 12, 2.5);
  for (double p : {0.3, 0.55, 0.8, 0.97}) {
    INFO("p " << p);
    const std::vector<double> q = reference_probs(l, 1.0, 0, p, 0.0);
    Sampler s(options(1.0, 0, p, 0.0));
    require_follows(s, l, q, 200);
  }
  // The mass is measured at temperature 1; a temperature only reshapes the kept set.
  const std::vector<double> q = reference_probs(l, 3.0, 0, 0.8, 0.0);
  Sampler hot(options(3.0, 0, 0.8, 0.0));
  require_follows(hot, l, q, 201);
  // A p below the top probability keeps only the argmax.
  Sampler tiny(options(1.0, 0, 1e-9, 0.0));
  Rng rng(3);
  for (int i = 0; i < 100; ++i) REQUIRE(tiny.sample(to_vec(l), rng) == by_likelihood(l)[0]);
}

TEST_CASE("Sampler: min-p drops tokens below min_p times the top probability", "[sampler]") {
  const std::vector<double> l = random_logits(16, 13, 2.5);
  int previous_kept = 17;
  for (double m : {0.05, 0.2, 0.4}) {
    INFO("min_p " << m);
    const std::vector<double> q = reference_probs(l, 0.8, 0, 1.0, m);
    const int kept = int(std::count_if(q.begin(), q.end(), [](double x) { return x > 0; }));
    REQUIRE(kept < previous_kept);  // each min_p cuts more, so the three cases differ
    previous_kept = kept;
    Sampler s(options(0.8, 0, 1.0, m));
    require_follows(s, l, q, 300);
  }
  // min_p = 1 keeps only the top token (and tokens tied with it).
  std::vector<double> tied = {0.5, 2.0, -1.0, 2.0, 1.99};
  Sampler one(options(1.0, 0, 1.0, 1.0));
  Rng rng(4);
  int counts[5] = {0};
  for (int i = 0; i < 2000; ++i) ++counts[one.sample(to_vec(tied), rng)];
  REQUIRE(counts[1] + counts[3] == 2000);
  REQUIRE(counts[1] > 850);
  REQUIRE(counts[3] > 850);
}

TEST_CASE("Sampler: top-k, top-p and min-p together apply in llama.cpp's order", "[sampler]") {
  const std::vector<double> l = random_logits(40, 14, 3.0);
  // top-p's mass is over the top-k set renormalised, not over all V tokens.
  const std::vector<double> q1 = reference_probs(l, 1.3, 10, 0.7, 0.0);
  Sampler s1(options(1.3, 10, 0.7, 0.0));
  require_follows(s1, l, q1, 400);
  const std::vector<double> q2 = reference_probs(l, 0.9, 12, 0.9, 0.1);
  Sampler s2(options(0.9, 12, 0.9, 0.1));
  require_follows(s2, l, q2, 401);
  // The order matters here: top-p over all tokens would keep a different set.
  const std::vector<double> all = reference_probs(l, 1.3, 0, 0.7, 0.0);
  int differ = 0;
  for (std::size_t v = 0; v < l.size(); ++v) differ += (q1[v] > 0) != (all[v] > 0);
  REQUIRE(differ > 0);
}

TEST_CASE("Sampler: apply_penalty divides positive and multiplies other logits of tokens in the window", "[sampler]") {
  Vec<float> logits(7);
  logits << 2.0f, -1.0f, 0.0f, 3.0f, -INFINITY, 0.5f, -0.25f;
  const std::vector<Token> window = {0, 1, 0, 2, 4, 5, 5, 0};  // repeats are penalised once
  Vec<double> out;
  Sampler::apply_penalty(logits, window, 2.0, out);
  REQUIRE(out.size() == 7);
  CHECK(out[0] == 1.0);
  CHECK(out[1] == -2.0);
  CHECK(out[2] == 0.0);
  CHECK(out[3] == 3.0);  // not in the window
  CHECK(out[4] == -INFINITY);
  CHECK(out[5] == 0.25);
  CHECK(out[6] == -0.25);  // not in the window
  // A penalty below 1 encourages repeats with the same rule.
  Sampler::apply_penalty(logits, window, 0.5, out);
  CHECK(out[0] == 4.0);
  CHECK(out[1] == -0.5);
  CHECK(out[5] == 1.0);
  CHECK(out[3] == 3.0);
  // Penalty 1 and an empty window copy the logits.
  Sampler::apply_penalty(logits, window, 1.0, out);
  REQUIRE(out == logits.cast<double>());
  Sampler::apply_penalty(logits, TokenSpan(), 1.3, out);
  REQUIRE(out == logits.cast<double>());
  const std::vector<Token> too_large{1, 7}, negative{-1};
  SEQGEN_THROWS_WITH(Sampler::apply_penalty(logits, too_large, 2.0, out), IndexError,
                     "recent token 7 (1 of the penalty window) is outside [0, 7)");
  SEQGEN_THROWS_WITH(Sampler::apply_penalty(logits, negative, 2.0, out), IndexError, "recent token -1");
}

TEST_CASE("Sampler: the repetition penalty looks at the last repeat_last_n tokens only", "[sampler]") {
  Vec<double> logits(4);
  logits << 2.0, 1.9, -1.0, -1.05;
  // 2.0 / 1.1 = 1.818 < 1.9: a penalised token 0 loses the greedy pick to token 1.
  Sampler g(options(0.0, 0, 1.0, 0.0, 1.1, 2));
  Rng rng(1);
  const std::vector<Token> just0{0}, old0{0, 3, 3}, both{0, 1}, long0{0, 3, 3, 3, 3}, outside{99, 1, 2}, bad{1, 4};
  REQUIRE(g.sample(logits, rng) == 0);                               // no history
  REQUIRE(g.sample(logits, rng, just0) == 1);                        // penalised
  REQUIRE(g.sample(logits, rng, old0) == 0);                         // 0 fell out of the last 2
  REQUIRE(g.sample(logits, rng, both) == 0);                         // both penalised: 1.818 > 1.727
  Sampler all(options(0.0, 0, 1.0, 0.0, 1.1, -1));
  REQUIRE(all.sample(logits, rng, long0) == 1);
  Sampler none(options(0.0, 0, 1.0, 0.0, 1.1, 0));
  REQUIRE(none.sample(logits, rng, just0) == 0);
  // Negative logits are multiplied: -1.0 * 1.1 = -1.1 < -1.05.
  Vec<double> negative(2);
  negative << -1.0, -1.05;
  REQUIRE(g.sample(negative, rng, just0) == 1);
  // Tokens outside the window are not checked, those inside are.
  REQUIRE(g.sample(logits, rng, outside) == 0);
  SEQGEN_THROWS_WITH(g.sample(logits, rng, bad), IndexError, "recent token 4");
}

TEST_CASE("Sampler: with a penalty, draws follow the softmax of the penalised logits", "[sampler]") {
  const std::vector<double> l = {1.0, 0.2, -0.5, 0.8, 1.5, -2.0};
  const std::vector<Token> recent = {4, 0, 2, 4, 2};
  std::vector<double> penalised = l;
  for (int t : {0, 2, 4}) penalised[t] = l[t] > 0 ? l[t] / 1.3 : l[t] * 1.3;
  Sampler s(options(0.9, 0, 1.0, 0.0, 1.3, 64));
  require_follows(s, l, reference_probs(penalised, 0.9, 0, 1.0, 0.0), 500, 20000, recent);
  // The truncations see the penalised logits too.
  Sampler k(options(0.9, 3, 1.0, 0.0, 1.3, 64));
  require_follows(k, l, reference_probs(penalised, 0.9, 3, 1.0, 0.0), 501, 20000, recent);
}

TEST_CASE("Sampler: temperature -> 0 picks the argmax of random logits; greedy draws no random number", "[sampler]") {
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const std::vector<double> l = random_logits(30, 1000 + seed, 3.0);
    const Vec<double> logits = to_vec(l);
    const Token argmax = Token(by_likelihood(l)[0]);
    Sampler greedy(options(0.0, 0, 1.0, 0.0)), cold(options(1e-9, 0, 1.0, 0.0));
    Sampler cold_truncated(options(1e-9, 5, 0.9, 0.05));
    Rng rng(seed);
    const Rng::State before = rng.state();
    REQUIRE(greedy.sample(logits, rng) == argmax);
    REQUIRE(rng.state() == before);
    REQUIRE(cold.sample(logits, rng) == argmax);
    REQUIRE(cold_truncated.sample(logits, rng) == argmax);
  }
}

TEST_CASE("Sampler: the same seed gives the same tokens with every control on", "[sampler]") {
  const std::vector<double> l = random_logits(50, 15, 2.0);
  const Vec<double> logits = to_vec(l);
  const SamplingOptions o = options(0.8, 20, 0.95, 0.02, 1.2, 8);
  auto run = [&](std::uint64_t seed) {
    Sampler s(o);
    Rng rng(seed);
    std::vector<Token> out;
    for (int i = 0; i < 300; ++i) out.push_back(s.sample(logits, rng, out));
    return out;
  };
  const std::vector<Token> a = run(7), b = run(7), c = run(8);
  REQUIRE(a == b);
  REQUIRE(a != c);
  // The penalty made repeats rarer but the draw still varies.
  REQUIRE(std::set<Token>(a.begin(), a.end()).size() > 5);
}

TEST_CASE("Sampler: every bad option and bad logits give a clear error", "[sampler]") {
  SEQGEN_THROWS_WITH(Sampler(options(INFINITY, 0, 1.0, 0.0)), ConfigError, "temperature must be finite, got inf");
  SEQGEN_THROWS_WITH(Sampler(options(NAN, 0, 1.0, 0.0)), ConfigError, "temperature must be >= 0, got nan");
  SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, 0.0, 0.0)), ConfigError, "top_p must be in (0, 1], got 0");
  SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, 1.5, 0.0)), ConfigError, "top_p must be in (0, 1], got 1.5");
  SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, NAN, 0.0)), ConfigError, "top_p must be in (0, 1], got nan");
  SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, 1.0, -0.1)), ConfigError, "min_p must be in [0, 1], got -0.1");
  SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, 1.0, 1.25)), ConfigError, "min_p must be in [0, 1], got 1.25");
  for (double penalty : {0.0, -1.1, double(INFINITY), double(NAN), 1e-320, 9e-4, 1001.0})
    SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, 1.0, 0.0, penalty)), ConfigError,
                       "repeat_penalty must be in [0.001, 1000], got ");
  // The ends of the range sample finite logits without overflow.
  for (double penalty : {1e-3, 1e3}) {
    Sampler s(options(1.0, 0, 1.0, 0.0, penalty));
    Rng rng(1);
    Vec<float> logits(4);
    logits << 3e38f, -3e38f, 1.0f, 0.5f;
    const std::vector<Token> recent = {0, 1, 2, 3};
    const Token t = s.sample(logits, rng, TokenSpan(recent.data(), Index(recent.size())));
    CHECK((t >= 0 && t < 4));
  }
  SEQGEN_THROWS_WITH(Sampler(options(1.0, 0, 1.0, 0.0, 1.1, -2)), ConfigError,
                     "repeat_last_n must be >= -1 (-1: all), got -2");
  SamplingOptions with_stop;
  with_stop.stop = {"\n\n", ""};
  SEQGEN_THROWS_WITH(Sampler(with_stop), ConfigError, "SamplingOptions: stop string 1 is empty");

  Sampler s;
  Rng rng(1);
  SEQGEN_THROWS_WITH(s.sample(Vec<double>(0), rng), ShapeError, "logits must be a non-empty vector, got (0, 1)");
  SEQGEN_THROWS_WITH(s.sample(Mat<double>::Zero(2, 3), rng), ShapeError,
                     "logits must be a non-empty vector, got (2, 3)");
  Vec<double> l(3);
  l << 0.0, NAN, 1.0;
  SEQGEN_THROWS_WITH(s.sample(l, rng), Error, "logit 1 is nan");
  l << 0.0, 1.0, INFINITY;
  SEQGEN_THROWS_WITH(s.sample(l, rng), Error, "logit 2 is inf");
  l.setConstant(-INFINITY);
  SEQGEN_THROWS_WITH(s.sample(l, rng), Error, "every logit is -inf");
  // -inf masks a token without being an error.
  l << -INFINITY, 0.0, -INFINITY;
  for (int i = 0; i < 20; ++i) REQUIRE(s.sample(l, rng) == 1);
  // A row of logits is accepted as well as a column.
  Eigen::Matrix<float, 1, Eigen::Dynamic> row(3);
  row << -5.0f, 5.0f, -5.0f;
  REQUIRE(Sampler(options(0.0, 0, 1.0, 0.0)).sample(row, rng) == 1);
}

// ---------------------------------------------------------------------------------------------
// Stop strings.

namespace {

// Feeds the pieces, collecting what a streaming caller would print. Returns (printed, stopped).
std::pair<std::string, bool> stream(StopStrings& stops, const std::vector<std::string>& pieces) {
  std::string printed;
  bool stopped = false;
  for (const std::string& piece : pieces) {
    stopped = stops.feed(piece);
    printed += stops.take();
    REQUIRE(stops.text().compare(0, printed.size(), printed) == 0);  // what is printed is never taken back
    if (stopped) break;
  }
  printed += stops.flush();
  return {printed, stopped};
}

// Reference: the text as if it came one byte at a time; cut before the first stop string completed.
std::string reference_cut(const std::string& text, const std::vector<std::string>& stops) {
  for (std::size_t end = 1; end <= text.size(); ++end) {
    std::size_t start = end;
    for (const std::string& s : stops)
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) start = std::min(start, end - s.size());
    if (start < end) return text.substr(0, start);
  }
  return text;
}

}  // namespace

TEST_CASE("StopStrings: a stop string split across two pieces is held back, then cut", "[sampler][stop]") {
  StopStrings stops({"END"});
  REQUIRE_FALSE(stops.feed("Hello EN"));
  REQUIRE(stops.take() == "Hello ");  // "EN" might begin "END"
  REQUIRE(stops.held() == 2);
  REQUIRE(stops.feed("D world"));
  REQUIRE(stops.stopped());
  REQUIRE(stops.matched() == 0);
  REQUIRE(stops.take() == "");
  REQUIRE(stops.flush() == "");
  REQUIRE(stops.text() == "Hello ");
  // Later pieces are ignored.
  REQUIRE(stops.feed("more"));
  REQUIRE(stops.text() == "Hello ");
}

TEST_CASE("StopStrings: held text is released when it turns out not to be a stop string", "[sampler][stop]") {
  StopStrings stops({"END", "\n\n"});
  REQUIRE_FALSE(stops.feed("ab E"));
  REQUIRE(stops.take() == "ab ");
  REQUIRE_FALSE(stops.feed("Nx\n"));
  REQUIRE(stops.take() == "ENx");  // "\n" is held: it might begin "\n\n"
  REQUIRE_FALSE(stops.feed("y"));
  REQUIRE(stops.take() == "\ny");
  REQUIRE_FALSE(stops.feed("E"));
  REQUIRE(stops.take() == "");
  REQUIRE(stops.flush() == "E");  // generation ended: the held tail is printed
  REQUIRE(stops.text() == "ab ENx\nyE");
  REQUIRE_FALSE(stops.stopped());
  REQUIRE(stops.matched() == -1);

  // A stop string inside one piece, at the very start, and over three pieces.
  stops.reset();
  REQUIRE(stops.feed("one\n\ntwo"));
  REQUIRE(stops.matched() == 1);
  REQUIRE(stops.take() == "one");
  stops.reset();
  REQUIRE(stops.feed("END"));
  REQUIRE(stops.text().empty());
  stops.reset();
  REQUIRE(stream(stops, {"x", "E", "N", "D", "y"}) == std::make_pair(std::string("x"), true));
}

TEST_CASE("StopStrings: overlapping prefixes hold only what could still match", "[sampler][stop]") {
  StopStrings stops({"aab"});
  REQUIRE_FALSE(stops.feed("aa"));
  REQUIRE(stops.take() == "");
  REQUIRE_FALSE(stops.feed("a"));
  REQUIRE(stops.take() == "a");  // "aaa": only the last "aa" can still begin "aab"
  REQUIRE(stops.feed("b"));
  REQUIRE(stops.text() == "a");
  // A multi-byte UTF-8 stop string split inside its character.
  StopStrings arrow({"\xE2\x86\x92"});  // U+2192 RIGHTWARDS ARROW
  REQUIRE(stream(arrow, {"a \xE2", "\x86", "\x92 b"}) == std::make_pair(std::string("a "), true));
  // No stop strings: nothing is ever held.
  StopStrings none;
  REQUIRE_FALSE(none.feed("abc"));
  REQUIRE(none.take() == "abc");
  SEQGEN_THROWS_WITH(StopStrings({"a", ""}), ConfigError, "StopStrings: stop string 1 is empty");
}

TEST_CASE("StopStrings: the first stop string completed wins, however the text is cut into pieces", "[sampler][stop]") {
  // Within one piece "abcd", "bc" completes before "abcd" does, so it wins although it starts later.
  StopStrings s({"abcd", "bc"});
  REQUIRE(s.feed("xabcd"));
  REQUIRE(s.text() == "xa");
  REQUIRE(s.matched() == 1);
  // Random texts over a small alphabet, random cuts, against the byte-at-a-time reference.
  const std::vector<std::string> stop_list = {"abc", "bca", "cc", "bab", "aaaa"};
  Rng rng(77);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = 1 + int(rng.uniform_int(30));
    for (int i = 0; i < n; ++i) text += char('a' + rng.uniform_int(3));
    std::vector<std::string> pieces;
    for (std::size_t at = 0; at < text.size();) {
      const std::size_t len = std::min<std::size_t>(text.size() - at, 1 + rng.uniform_int(4));
      pieces.push_back(text.substr(at, len));
      at += len;
    }
    StopStrings stops(stop_list);
    const auto [printed, stopped] = stream(stops, pieces);
    const std::string expected = reference_cut(text, stop_list);
    INFO("text " << text);
    REQUIRE(printed == expected);
    REQUIRE(stops.text() == expected);
    REQUIRE(stopped == (expected.size() < text.size()));
  }
}

}  // namespace test_sampler
