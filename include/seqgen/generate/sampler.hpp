// Picking the next token from a column of logits.
//
//   greedy            argmax
//   temperature τ     p ∝ exp(logit / τ)              τ → 0 is greedy
//   top-k             keep the k most likely tokens
// The draw uses seqgen::Rng, so a seed fixes the text.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {

struct SamplingOptions {
  double temperature = 1.0;  // 0 means greedy
  Index top_k = 0;           // 0 keeps every token

  void validate() const {
    check<ConfigError>(temperature >= 0 && std::isfinite(temperature),
                       "SamplingOptions: temperature must be >= 0, got ", temperature);
    check<ConfigError>(top_k >= 0, "SamplingOptions: top_k must be >= 0, got ", top_k);
  }
};

class Sampler {
 public:
  explicit Sampler(SamplingOptions options = {}) : options_(options) { options_.validate(); }

  // logits: (V) for one position.
  template <typename Derived>
  Token sample(const Eigen::MatrixBase<Derived>& logits, Rng& rng) {
    const Index V = logits.size();
    check<ShapeError>(V > 0, "Sampler: empty logits");
    Index best = 0;
    for (Index v = 1; v < V; ++v)
      if (logits(v) > logits(best)) best = v;
    if (options_.temperature == 0) return Token(best);

    order_.resize(V);
    for (Index v = 0; v < V; ++v) order_[v] = Token(v);
    Index keep = V;
    if (options_.top_k > 0 && options_.top_k < V) {
      keep = options_.top_k;
      std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(),
                        [&](Token a, Token b) { return logits(a) > logits(b) || (logits(a) == logits(b) && a < b); });
    }
    weights_.resize(keep);
    double total = 0;
    for (Index i = 0; i < keep; ++i) {
      weights_[i] = std::exp((double(logits(order_[i])) - double(logits(best))) / options_.temperature);
      total += weights_[i];
    }
    double u = rng.uniform() * total;
    for (Index i = 0; i < keep; ++i) {
      u -= weights_[i];
      if (u < 0) return order_[i];
    }
    return order_[keep - 1];
  }

 private:
  SamplingOptions options_;
  std::vector<Token> order_;
  std::vector<double> weights_;
};

}  // namespace seqgen
