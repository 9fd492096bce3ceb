// Picking the next token from a column of logits, with llama.cpp's controls in llama.cpp's order.
//
// With l the V logits and `recent` the tokens generated so far (the prompt included, if the caller
// wishes), one draw is:
//   1. repetition penalty   each distinct token t among the last repeat_last_n of `recent`:
//                             l_t ← l_t / penalty  if l_t > 0,   l_t ← l_t · penalty  otherwise
//   2. temperature 0        return argmax l (lowest id on ties); no random number is used
//   3. top-k                keep the k largest logits
//   4. top-p (nucleus)      p = softmax of the kept logits; keep the smallest set of most likely
//                           tokens whose mass reaches top_p
//   5. min-p                keep the tokens with p_t >= min_p · max p, i.e. l_t >= max l + log(min_p)
//   6. temperature τ        q_t ∝ exp(l_t / τ) over the kept tokens
//   7. draw                 one uniform u from seqgen::Rng; the first kept token (most likely first
//                           when a truncation is on, by id otherwise) whose cumulative q exceeds u
// As in llama.cpp's default chain, top-p and min-p see the probabilities at temperature 1: the
// temperature reshapes only the final draw. Ties in the ordering go to the lower token id, so a
// seed gives the same tokens on every platform (given the same logits).
//
// Each step that is off (top_k 0, top_p 1, min_p 0, repeat_penalty 1) costs nothing. A truncation
// sorts only as far as it needs (nth_element, then a sort of the kept prefix). The buffers are
// members sized on the first call, so later calls with the same V do not allocate.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/generate/stop_strings.hpp"

namespace seqgen {

struct SamplingOptions {
  double temperature = 1.0;     // >= 0; 0 is greedy
  Index top_k = 0;              // >= 0; 0 keeps every token
  double top_p = 1.0;           // in (0, 1]; 1 keeps every token
  double min_p = 0.0;           // in [0, 1]; 0 keeps every token
  double repeat_penalty = 1.0;  // in [0.001, 1000]; 1 is off, > 1 discourages repeats
  Index repeat_last_n = 64;     // window of recent tokens the penalty looks at; 0 none, -1 all of them
  // Not used by Sampler: a generation loop feeds its text to StopStrings(stop).
  std::vector<std::string> stop = {};

  void validate() const {
    check<ConfigError>(temperature >= 0, "SamplingOptions: temperature must be >= 0, got ", temperature);
    check<ConfigError>(std::isfinite(temperature), "SamplingOptions: temperature must be finite, got ", temperature);
    check<ConfigError>(top_k >= 0, "SamplingOptions: top_k must be >= 0, got ", top_k);
    check<ConfigError>(top_p > 0 && top_p <= 1, "SamplingOptions: top_p must be in (0, 1], got ", top_p);
    check<ConfigError>(min_p >= 0 && min_p <= 1, "SamplingOptions: min_p must be in [0, 1], got ", min_p);
    // Beyond this range a penalised logit can overflow to infinity (a logit of 1 divided by 1e-320).
    check<ConfigError>(repeat_penalty >= 1e-3 && repeat_penalty <= 1e3,
                       "SamplingOptions: repeat_penalty must be in [0.001, 1000], got ", repeat_penalty);
    check<ConfigError>(repeat_last_n >= -1, "SamplingOptions: repeat_last_n must be >= -1 (-1: all), got ",
                       repeat_last_n);
    StopStrings::validate(stop, "SamplingOptions");
  }
};

class Sampler {
 public:
  explicit Sampler(SamplingOptions options = {}) : options_(std::move(options)) { options_.validate(); }

  const SamplingOptions& options() const { return options_; }

  // logits: (V) for one position (a column or a row). No history: no repetition penalty.
  template <typename Derived>
  Token sample(const Eigen::MatrixBase<Derived>& logits, Rng& rng) {
    return sample(logits, rng, TokenSpan());
  }

  // recent: the tokens so far, oldest first; the penalty looks at its last repeat_last_n.
  template <typename Derived>
  Token sample(const Eigen::MatrixBase<Derived>& logits, Rng& rng, TokenSpan recent) {
    const Index V = logits.size();
    check<ShapeError>(V > 0 && (logits.rows() == 1 || logits.cols() == 1),
                      "Sampler: logits must be a non-empty vector, got (", logits.rows(), ", ", logits.cols(), ")");
    TokenSpan window;
    if (options_.repeat_penalty != 1.0) {
      const Index n = options_.repeat_last_n < 0 ? recent.size : std::min(options_.repeat_last_n, recent.size);
      window = TokenSpan(recent.data + recent.size - n, n);
    }
    apply_penalty(logits, window, options_.repeat_penalty, work_);

    // The largest logit; it must be finite for the softmax below to be defined.
    Index best = 0, bad = -1;
    for (Index v = 0; v < V; ++v) {
      if (std::isnan(work_[v]) || work_[v] == INFINITY) bad = v;
      if (work_[v] > work_[best]) best = v;
    }
    check<Error>(bad < 0, "Sampler: logit ", bad, " is ", bad < 0 ? 0.0 : work_[bad], ", expected finite or -inf");
    const double top = work_[best];
    check<Error>(top > -INFINITY, "Sampler: every logit is -inf");
    if (options_.temperature == 0) return Token(best);

    // order_[0, keep) are the candidates; when truncating, most likely first.
    order_.resize(V);
    for (Index v = 0; v < V; ++v) order_[v] = Token(v);
    sorted_ = 0;
    Index keep = V;
    if (options_.top_k > 0 && options_.top_k < V) {
      keep = options_.top_k;
      sort_prefix(keep, V);
    }
    if (options_.top_p < 1) {
      double mass = 0;  // unnormalised: exp(l - max l), summed over the candidates
      for (Index i = 0; i < keep; ++i) mass += std::exp(work_[order_[i]] - top);
      const double target = options_.top_p * mass;
      double cum = 0;
      Index i = 0;
      while (i < keep) {
        if (i == sorted_) sort_prefix(std::min(keep, std::max<Index>(2 * sorted_, 32)), keep);
        cum += std::exp(work_[order_[i++]] - top);
        if (cum >= target) break;
      }
      keep = i;
    }
    if (options_.min_p > 0) {
      const double floor = top + std::log(options_.min_p);
      Index n = 0;
      for (Index i = 0; i < keep; ++i) n += work_[order_[i]] >= floor;
      sort_prefix(n, keep);
      keep = n;
    }

    weights_.resize(V);  // only [0, keep) is used; sized V so that no later call grows it
    double total = 0;
    for (Index i = 0; i < keep; ++i) {
      weights_[i] = std::exp((work_[order_[i]] - top) / options_.temperature);
      total += weights_[i];
    }
    double u = rng.uniform() * total;
    Index last = 0;  // the last candidate with a non-zero weight, for when rounding leaves u >= 0
    for (Index i = 0; i < keep; ++i) {
      u -= weights_[i];
      if (u < 0) return order_[i];
      if (weights_[i] > 0) last = i;
    }
    return order_[last];
  }

  // ASSIGNS out = logits (as double) with the repetition penalty applied once to each distinct
  // token of `window`:  l ← l / penalty if l > 0, else l · penalty.  penalty 1 copies the logits.
  template <typename Derived>
  static void apply_penalty(const Eigen::MatrixBase<Derived>& logits, TokenSpan window, double penalty,
                            Vec<double>& out) {
    const Index V = logits.size();
    ensure_shape(out, V, 1);
    for (Index v = 0; v < V; ++v) out[v] = double(logits(v));
    if (penalty == 1.0) return;
    for (Index i = 0; i < window.size; ++i) {
      const Token t = window[i];
      check<IndexError>(t >= 0 && t < V, "Sampler: recent token ", t, " (", i,
                        " of the penalty window) is outside [0, ", V, ")");
      // A token seen before in the window was already penalised, which changed its logit; one whose
      // logit the penalty leaves unchanged (0, -inf) gets the same value again. So no "seen" set.
      if (out[t] != double(logits(t))) continue;
      out[t] = out[t] > 0 ? out[t] / penalty : out[t] * penalty;
    }
  }

 private:
  // Makes order_[0, n) the n most likely of order_[0, end), sorted, given that order_[0, sorted_)
  // already are the sorted_ most likely.
  void sort_prefix(Index n, Index end) {
    if (n <= sorted_) return;
    const auto more_likely = [this](Token a, Token b) {
      return work_[a] > work_[b] || (work_[a] == work_[b] && a < b);
    };
    const auto first = order_.begin() + sorted_, mid = order_.begin() + n, last = order_.begin() + end;
    if (mid < last) std::nth_element(first, mid, last, more_likely);
    std::sort(first, mid, more_likely);
    sorted_ = n;
  }

  SamplingOptions options_;
  Vec<double> work_;             // (V) the logits after the penalty
  std::vector<Token> order_;     // (V) candidate ids
  std::vector<double> weights_;  // (V) exp((l - max l) / τ) of the kept candidates
  Index sorted_ = 0;             // order_[0, sorted_) are the most likely candidates, sorted
};

}  // namespace seqgen
