// GELU (Hendrycks & Gimpel, 2016) in the tanh approximation GPT-2 uses, PyTorch's
// nn.GELU(approximate="tanh"), and the transformer's feed-forward block built on it.
//
//   gelu(x)  = ½ x (1 + tanh u),   u = k (x + c x³),   k = √(2/π),   c = 0.044715
//   gelu'(x) = ½ (1 + tanh u) + ½ x (1 − tanh² u) k (1 + 3c x²)
//
// Large |x|: tanh saturates to ±1 long before x³ overflows, so gelu(x) = x for x ≫ 0 and 0 for
// x ≪ 0 (in float and double, u = ±inf still gives tanh u = ±1). The derivative clamps x to
// [−10, 10] first: at |x| = 10, u ≈ 44 and 1 − tanh² u < 1e-37, so gelu' is already exactly 1 or 0
// in double, and the clamp keeps x · (1 − tanh² u) · x² from becoming 0 · inf = NaN for huge x.
//
// Mlp (GPT-2's feed-forward):  h = W_fc x + b_fc   a = gelu(h)   y = W_proj a + b_proj
//   x: (C, N)   h, a: (4C, N)   y: (C, N)
// Backward:  da = W_projᵀ dy   dh = da ⊙ gelu'(h)   dx = W_fcᵀ dh   (plus each Linear's dW, db)
//
// Decoding: forward_packed(w, x, hidden, y, team) ADDS Mlp(x) into y (the residual stream), run
// by a thread team on packed copies of W_fc and W_proj (see Linear::forward_packed).
//
// Contract: forward ASSIGNS y and the cache (h and a). backward ADDS into every Param::grad and
// ASSIGNS dx; it reads the same x forward was given.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/linear.hpp"

namespace seqgen {

namespace detail {
constexpr double kGeluK = 0.7978845608028654;  // √(2/π)
constexpr double kGeluC = 0.044715;
}  // namespace detail

// Scalar versions, for reference and for tests.
template <typename Scalar>
Scalar gelu(Scalar x) {
  const Scalar u = Scalar(detail::kGeluK) * (x + Scalar(detail::kGeluC) * x * x * x);
  return Scalar(0.5) * x * (Scalar(1) + std::tanh(u));
}

template <typename Scalar>
Scalar gelu_derivative(Scalar x) {
  x = std::min(std::max(x, Scalar(-10)), Scalar(10));
  const Scalar k = Scalar(detail::kGeluK), c = Scalar(detail::kGeluC);
  const Scalar t = std::tanh(k * (x + c * x * x * x));
  return Scalar(0.5) * (Scalar(1) + t) + Scalar(0.5) * x * (Scalar(1) - t * t) * k * (Scalar(1) + Scalar(3) * c * x * x);
}

// The elementwise layer on whole matrices. No parameters and no cache: backward recomputes tanh
// from x, which is cheaper than storing it.
template <typename Scalar>
struct Gelu {
  // x: (R, N) -> y: (R, N)
  void forward(const ConstMatRef<Scalar>& x, Mat<Scalar>& y) const {
    ensure_shape(y, x.rows(), x.cols());
    forward_into(x, y);
  }

  // The same into a pre-sized view; y may be x itself (elementwise, each value read before written).
  void forward_into(const ConstMatRef<Scalar>& x, MatRef<Scalar> y) const {
    check<ShapeError>(y.rows() == x.rows() && y.cols() == x.cols(), "Gelu: output is (", y.rows(), ", ", y.cols(),
                      "), expected (", x.rows(), ", ", x.cols(), ")");
    const Scalar k = Scalar(detail::kGeluK), c = Scalar(detail::kGeluC);
    const Index N = x.cols();
    parallel_for(N, worth_a_team(x.size()), [&](Index n) {
      const auto xn = x.col(n).array();
      y.col(n).array() = Scalar(0.5) * xn * (Scalar(1) + (k * (xn + c * xn.cube())).tanh());
    });
  }

  // x, dy: (R, N) -> dx: (R, N). dx may be the same matrix as dy (elementwise, read before written).
  void backward(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, Mat<Scalar>& dx) const {
    check<ShapeError>(dy.rows() == x.rows() && dy.cols() == x.cols(), "GELU: dy is (", dy.rows(), ", ", dy.cols(),
                      "), expected (", x.rows(), ", ", x.cols(), ") like x");
    ensure_shape(dx, x.rows(), x.cols());
    const Scalar k = Scalar(detail::kGeluK), c = Scalar(detail::kGeluC);
    const Index R = x.rows(), N = x.cols();
    parallel_for(N, worth_a_team(x.size()), [&](Index n) {
      // tanh u is needed twice; a fixed-size chunk on the stack holds it, where an Eigen temporary
      // would be a heap allocation and a lazy expression would compute tanh twice.
      Eigen::Array<Scalar, kChunk, 1> t;
      for (Index i = 0; i < R; i += kChunk) {
        const Index len = std::min(kChunk, R - i);
        const auto xi = x.col(n).segment(i, len).array().max(Scalar(-10)).min(Scalar(10));
        auto ti = t.head(len);
        ti = (k * (xi + c * xi.cube())).tanh();
        dx.col(n).segment(i, len).array() =
            dy.col(n).segment(i, len).array() *
            (Scalar(0.5) * (Scalar(1) + ti) +
             Scalar(0.5) * k * xi * (Scalar(1) - ti.square()) * (Scalar(1) + Scalar(3) * c * xi.square()));
      }
    });
  }

 private:
  static constexpr Index kChunk = 256;
};

template <typename Scalar>
struct Mlp {
  std::string name;
  Linear<Scalar> fc;    // C -> 4C
  Linear<Scalar> proj;  // 4C -> C

  struct Cache {
    Mat<Scalar> h;   // (4C, N) before GELU, kept for backward
    // scratch
    Mat<Scalar> a;   // (4C, N) GELU(h), the input of proj; in backward GELU(h) again, then da, then dh

    // Trades this cache's scratch for `other`'s (the buffer, not its contents), so that layers
    // run one after another can share one set (TransformerBlock::Cache::take_scratch).
    void take_scratch(Cache& other) { a.swap(other.a); }
  };

  Mlp() = default;
  Mlp(std::string name_, Index C, Rng& rng)
      : name(std::move(name_)),
        fc(join_name(name, "fc"), checked_channels(name, C), 4 * C, rng),
        proj(join_name(name, "proj"), 4 * C, C, rng) {}

  Index channels() const { return fc.in_features(); }

  // x: (C, N) -> y: (C, N)
  void forward(const ConstMatRef<Scalar>& x, Mat<Scalar>& y, Cache& cache) const {
    check_input(x);
    fc.forward(x, cache.h);
    Gelu<Scalar>().forward(cache.h, cache.a);
    proj.forward(cache.a, y);
  }

  // Copies of W_fc and W_proj for forward_packed. Pack again after the weights change.
  struct Packed {
    PackedMatrix<Scalar> fc, proj;
  };
  void pack(Packed& w) const {
    fc.pack(w.fc);
    proj.pack(w.proj);
  }

  // x: (C, N), y: (C, N) -> y += Mlp(x), run by every thread of `team`. hidden: (4C, N) scratch
  // shared by the team. Ends with a barrier: on return, y is complete for the whole team.
  void forward_packed(const Packed& w, const ConstMatRef<Scalar>& x, MatRef<Scalar> hidden, MatRef<Scalar> y,
                      const Team& team) const {
    check_input(x);
    check<ShapeError>(y.rows() == channels() && y.cols() == x.cols(), "Mlp '", name, "': output is (", y.rows(),
                      ", ", y.cols(), "), expected (", channels(), ", ", x.cols(), ")");
    const std::pair<Index, Index> rows = fc.forward_packed(w.fc, x, hidden, false, team);
    auto mine = hidden.middleRows(rows.first, rows.second - rows.first);  // the rows this thread computed
    Gelu<Scalar>().forward_into(mine, mine);
    team.barrier();
    proj.forward_packed(w.proj, hidden, y, true, team);
    team.barrier();
  }

  // x, dy: (C, N) -> dx: (C, N)
  void backward(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, Cache& cache, Mat<Scalar>& dx) {
    check_input(x);
    const Index C = channels(), N = x.cols();
    check<ShapeError>(dy.rows() == C && dy.cols() == N, "Mlp '", name, "': dy is (", dy.rows(), ", ", dy.cols(),
                      "), expected (", C, ", ", N, ")");
    check<ShapeError>(cache.h.cols() == N, "Mlp '", name, "': cache holds ", cache.h.cols(), " columns, expected ",
                      N, " (call forward with this x first)");
    // GELU(h) again rather than kept from forward: 4C floats per token less to keep, for one
    // element-wise pass (the products around it cost 16·C² per token).
    // One (4C, N) buffer serves all three: proj's weight gradient reads a before da overwrites it.
    Gelu<Scalar>().forward(cache.h, cache.a);
    proj.backward(cache.a, dy, &cache.a);                 // dW_proj from a, then a = da = W_projᵀ dy
    Gelu<Scalar>().backward(cache.h, cache.a, cache.a);  // a = dh = da ⊙ gelu'(h), in place
    fc.backward(x, cache.a, &dx);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    fc.for_each_param(visit);
    proj.for_each_param(visit);
  }

 private:
  static Index checked_channels(const std::string& name, Index C) {
    check<ConfigError>(C > 0, "Mlp '", name, "': C must be positive, got C=", C);
    return C;
  }
  void check_input(const ConstMatRef<Scalar>& x) const {
    check<ShapeError>(x.rows() == channels(), "Mlp '", name, "': input has ", x.rows(), " rows, expected ", channels(),
                      " (C)");
  }
};

}  // namespace seqgen
