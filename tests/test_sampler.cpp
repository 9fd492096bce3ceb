// Sampling from fixed logits.
#include <seqgen/generate/sampler.hpp>

#include <cmath>

#include "test_util.hpp"

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
