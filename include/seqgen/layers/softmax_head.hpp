// Output head: projection to the vocabulary fused with softmax cross-entropy.
//
//   x: (C, N)   W: (C, V)   z = Wᵀ x: (V, N)   targets: N ids in [0, V) or kIgnore
//   p[:, n] = softmax(z[:, n])
//   loss    = (1 / K) Σ_{n : target_n ≠ kIgnore} −log p[target_n, n]      K = number of such n
// computed per column with the log-sum-exp shift m = max(z[:, n]):
//   −log p[t, n] = log Σ_v exp(z[v, n] − m) − (z[t, n] − m)
// so every exponent is ≤ 0 and logits of ±1e4 neither overflow nor give log(0).
// Backward of the mean loss (∂L/∂loss = 1), with δ = (p − onehot(target)) / K (zero for ignored columns):
//   dW += x δᵀ      dx = W δ
//
// The head owns no parameter: W is passed in, with Embedding's (C, V) layout, so a model can tie
// its output projection to its token embedding (as GPT-2 does) or pass a separate Param.
// Fusing the loss with the projection means the (V, N) logits are the only big buffer: forward
// turns them into p in place and backward turns p into δ in place.
//
// Contract: forward ASSIGNS the cache and returns the loss. backward ADDS into weight.grad, ASSIGNS
// dx and consumes the cache (cache.probs then holds δ); it may run once per forward.
#pragma once

#include <cmath>
#include <string>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/core/parallel.hpp"

namespace seqgen {

template <typename Scalar>
struct SoftmaxHead {
  static constexpr Token kIgnore = -1;  // a target equal to this is masked out of the loss
  std::string name = "lm_head";

  struct Cache {
    Mat<Scalar> probs;    // (V, N) softmax after forward; δ = ∂loss/∂z after backward
    Vec<Scalar> losses;   // (N) −log p[target, n], 0 for ignored columns
    Index count = 0;      // K, the number of forward's non-ignored targets
    bool consumed = false;  // set by backward
  };

  SoftmaxHead() = default;
  explicit SoftmaxHead(std::string name_) : name(std::move(name_)) {}

  // weight: (C, V), x: (C, N), targets: N  ->  mean loss over non-ignored targets (0 if there are none)
  Scalar forward(const Param<Scalar>& weight, const ConstMatRef<Scalar>& x, TokenSpan targets, Cache& cache) const {
    check_input(weight, x);
    cache.count = check_targets(weight, x, targets);
    cache.consumed = false;
    const Index V = weight.value.cols(), N = x.cols();
    ensure_shape(cache.probs, V, N);
    ensure_shape(cache.losses, N, 1);
    gemm<Scalar>(weight.value, true, x, false, cache.probs, false);

    parallel_for(N, worth_a_team(V * N), [&](Index n) {
      auto z = cache.probs.col(n);
      const Scalar m = z.maxCoeff();
      const Token t = targets[n];
      const Scalar zt_shifted = t == kIgnore ? Scalar(0) : z(t) - m;  // read before z becomes p
      z.array() = (z.array() - m).exp();
      const Scalar sum = z.sum();  // ≥ 1: the max term is exp(0)
      z *= Scalar(1) / sum;
      cache.losses(n) = t == kIgnore ? Scalar(0) : std::log(sum) - zt_shifted;
    });
    if (cache.count == 0) return Scalar(0);
    // Summed serially in double: the same result for any thread count, and no float drift over N.
    double total = 0;
    for (Index n = 0; n < N; ++n) total += static_cast<double>(cache.losses(n));
    return static_cast<Scalar>(total / static_cast<double>(cache.count));
  }

  // weight: (C, V), x: (C, N), targets: N (usually forward's)  ->  dx: (C, N)
  // The gradient of the mean loss over these targets: K is counted from them, here, since the
  // probabilities forward kept do not depend on the targets (cache.count is forward's K, for its loss).
  void backward(Param<Scalar>& weight, const ConstMatRef<Scalar>& x, TokenSpan targets, Cache& cache,
                Mat<Scalar>& dx) const {
    check_input(weight, x);
    const Index count = check_targets(weight, x, targets);
    const Index V = weight.value.cols(), N = x.cols();
    check<ShapeError>(cache.probs.rows() == V && cache.probs.cols() == N, "SoftmaxHead '", name, "': cache holds (",
                      cache.probs.rows(), ", ", cache.probs.cols(), ") probabilities, expected (", V, ", ", N,
                      ") (call forward with this x first)");
    check<ConfigError>(!cache.consumed, "SoftmaxHead '", name,
                       "': backward called twice after one forward (the cache already holds gradients)");
    cache.consumed = true;

    Mat<Scalar>& delta = cache.probs;
    const Scalar inv_count = count > 0 ? Scalar(1) / static_cast<Scalar>(count) : Scalar(0);
    parallel_for(N, worth_a_team(V * N), [&](Index n) {
      const Token t = targets[n];
      if (t == kIgnore) {
        delta.col(n).setZero();
      } else {
        delta.col(n) *= inv_count;
        delta(t, n) -= inv_count;
      }
    });
    gemm<Scalar>(x, false, delta, true, weight.grad, true);
    ensure_shape(dx, x.rows(), N);
    gemm<Scalar>(weight.value, false, delta, false, dx, false);
  }

  // Inference: weight: (C, V), x: (C, N) -> out: (V, N) logits.
  void logits(const Param<Scalar>& weight, const ConstMatRef<Scalar>& x, Mat<Scalar>& out) const {
    check_input(weight, x);
    ensure_shape(out, weight.value.cols(), x.cols());
    gemm<Scalar>(weight.value, true, x, false, out, false);
  }

 private:
  void check_input(const Param<Scalar>& weight, const ConstMatRef<Scalar>& x) const {
    check<ShapeError>(weight.value.rows() > 0 && weight.value.cols() > 0, "SoftmaxHead '", name,
                      "': weight '", weight.name, "' is empty, expected (C, V)");
    check<ShapeError>(x.rows() == weight.value.rows(), "SoftmaxHead '", name, "': input has ", x.rows(),
                      " rows, expected ", weight.value.rows(), " (the rows C of weight '", weight.name, "')");
  }

  // Returns the number of non-ignored targets.
  Index check_targets(const Param<Scalar>& weight, const ConstMatRef<Scalar>& x, TokenSpan targets) const {
    check<ShapeError>(targets.size == x.cols(), "SoftmaxHead '", name, "': ", targets.size, " targets for ", x.cols(),
                      " input columns");
    const Index V = weight.value.cols();
    Index count = 0;
    for (Index n = 0; n < targets.size; ++n) {
      const Token t = targets[n];
      if (t == kIgnore) continue;
      check<IndexError>(t >= 0 && t < V, "SoftmaxHead '", name, "': target ", t, " at position ", n,
                        " is out of range [0, ", V, ") and is not the ignore index ", kIgnore);
      ++count;
    }
    return count;
  }
};

}  // namespace seqgen
