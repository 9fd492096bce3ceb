// Layer normalisation over the channels of each token (Ba, Kiros & Hinton, 2016), as PyTorch's
// nn.LayerNorm(C) with eps 1e-5 and the biased variance:
//
//   x: (C, N)   g, b: (C)   y: (C, N)      for each column n:
//   μ = mean(x)   σ² = mean((x − μ)²)   rstd = 1 / sqrt(σ² + eps)
//   x̂ = (x − μ) · rstd                    y = g ⊙ x̂ + b
// Backward, with dy = ∂L/∂y, per column:
//   dg += dy ⊙ x̂       db += dy
//   dx = rstd · (g⊙dy − mean(g⊙dy) − x̂ · mean(g⊙dy ⊙ x̂))
//
// The variance is computed from the centred column (a second pass over C values that are already
// in cache) rather than as E[x²] − μ², which cancels catastrophically in float for |x| ~ 1e4.
// A constant column has σ² = 0, rstd = 1/sqrt(eps) and x̂ = 0: y = b, still finite.
//
// Contract: forward ASSIGNS y and the cache (mean and rstd per column). backward ADDS into
// weight.grad and bias.grad and ASSIGNS dx. backward reads the same x forward was given and
// recomputes x̂ from it and the cache. dx may be the same matrix as dy (in place); x must not be.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "seqgen/core/error.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/core/parallel.hpp"

namespace seqgen {

template <typename Scalar>
struct LayerNorm {
  Param<Scalar> weight;  // (C, 1), the gain g
  Param<Scalar> bias;    // (C, 1)
  std::string name;
  static constexpr double kEps = 1e-5;

  struct Cache {
    Vec<Scalar> mean;  // (N)
    Vec<Scalar> rstd;  // (N)
  };

  LayerNorm() = default;
  // PyTorch's initialisation: g = 1, b = 0.
  LayerNorm(std::string name_, Index C)
      : weight(join_name(name_, "weight"), C, 1), bias(join_name(name_, "bias"), C, 1), name(std::move(name_)) {
    check<ConfigError>(C > 0, "LayerNorm '", name, "': size must be positive, got C=", C);
    weight.value.setOnes();
  }

  Index dim() const { return weight.value.rows(); }

  // x: (C, N) -> y: (C, N), cache.mean and cache.rstd: (N)
  void forward(const ConstMatRef<Scalar>& x, Mat<Scalar>& y, Cache& cache) const {
    check_input(x);
    ensure_shape(cache.mean, x.cols(), 1);
    ensure_shape(cache.rstd, x.cols(), 1);
    ensure_shape(y, dim(), x.cols());
    normalize(x, y, cache.mean.data(), cache.rstd.data());
  }

  // Inference: the same y, no cache.
  void forward(const ConstMatRef<Scalar>& x, Mat<Scalar>& y) const {
    check_input(x);
    ensure_shape(y, dim(), x.cols());
    normalize(x, y, nullptr, nullptr);
  }

  // Inference into a pre-sized view, e.g. a block of a decoder's workspace.
  void forward_into(const ConstMatRef<Scalar>& x, MatRef<Scalar> y) const {
    check_input(x);
    check<ShapeError>(y.rows() == dim() && y.cols() == x.cols(), "LayerNorm '", name, "': output is (", y.rows(), ", ",
                      y.cols(), "), expected (", dim(), ", ", x.cols(), ")");
    normalize(x, y, nullptr, nullptr);
  }

  // x, dy: (C, N) -> dx: (C, N)
  // y = LN(x) again from the statistics forward saved in `cache`: the same values forward gave,
  // bit for bit, without the two reductions. Lets a caller keep the statistics instead of y.
  void forward_again(const ConstMatRef<Scalar>& x, const Cache& cache, Mat<Scalar>& y) const {
    check_input(x);
    check_cache(x, cache);
    ensure_shape(y, dim(), x.cols());
    const auto g = weight.value.col(0).array();
    const auto b = bias.value.col(0).array();
    parallel_for(x.cols(), worth_a_team(x.size()), [&](Index n) {
      y.col(n) = ((x.col(n).array() - cache.mean(n)) * cache.rstd(n) * g + b).matrix();
    });
  }

  void backward(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, const Cache& cache, Mat<Scalar>& dx) {
    check_input(x);
    const Index C = dim(), N = x.cols();
    check<ShapeError>(dy.rows() == C && dy.cols() == N, "LayerNorm '", name, "': dy is (", dy.rows(), ", ", dy.cols(),
                      "), expected (", C, ", ", N, ")");
    check_cache(x, cache);
    // dy is read in full by the parameter gradients before any column of dx is written, and each
    // column of dx only from the same column of dy, so dx may be dy. (A resize of dx would free dy's
    // memory, so an aliased dx already has dy's shape and is not resized.)
    ensure_shape(dx, C, N);

    // Parameter gradients by blocks of rows, each a sum over the columns in order: race-free and
    // the same for any thread count. x̂ is recomputed from x rather than stored, which also saves
    // a pass over memory.
    parallel_row_blocks(C, worth_a_team(x.size()), [&](Index r0, Index r1) {
      for (Index s0 = r0; s0 < r1; s0 += kRowBlock) {
        const Index rows = std::min<Index>(kRowBlock, r1 - s0);
        if (rows == kRowBlock)
          add_param_grads<kRowBlock>(x, dy, cache, s0, rows);
        else
          add_param_grads<Eigen::Dynamic>(x, dy, cache, s0, rows);
      }
    });

    const auto g = weight.value.col(0).array();
    parallel_for(N, worth_a_team(x.size()), [&](Index n) {
      const auto xhat = (x.col(n).array() - cache.mean(n)) * cache.rstd(n);
      const auto gdy = g * dy.col(n).array();
      const Scalar mean_gdy = gdy.mean();
      const Scalar mean_gdy_xhat = (gdy * xhat).mean();
      dx.col(n) = (cache.rstd(n) * (gdy - mean_gdy - xhat * mean_gdy_xhat)).matrix();  // element-wise: dy may be dx
    });
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight);
    visit(bias);
  }

 private:
  void check_input(const ConstMatRef<Scalar>& x) const {
    check<ShapeError>(x.rows() == dim(), "LayerNorm '", name, "': input has ", x.rows(), " rows, expected ", dim());
  }

  void check_cache(const ConstMatRef<Scalar>& x, const Cache& cache) const {
    check<ShapeError>(cache.mean.size() == x.cols() && cache.rstd.size() == x.cols(), "LayerNorm '", name,
                      "': cache holds ", cache.mean.size(), " columns, expected ", x.cols(),
                      " (call forward with this x first)");
  }

  static constexpr int kRowBlock = 32;  // rows summed at once (parallel_row_blocks' block, 32, is a multiple)

  // Rows [r0, r0 + rows) of weight.grad += Σ_n dy ⊙ x̂ and of bias.grad += Σ_n dy, with x̂ = (x − μ)·rstd
  // recomputed column by column. Rows is `rows` fixed at compile time for the full blocks, which
  // lets the compiler keep both sums in registers (rows of a last, shorter block: Eigen::Dynamic).
  // The sums live on the stack, at most kRowBlock each: no allocation.
  template <int Rows>
  void add_param_grads(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, const Cache& cache, Index r0,
                       Index rows) {
    using Sums = Eigen::Array<Scalar, Rows, 1, Eigen::ColMajor, kRowBlock, 1>;
    Sums dg = Sums::Zero(rows), db = Sums::Zero(rows);
    for (Index n = 0; n < x.cols(); ++n) {
      const auto dyn = dy.col(n).template segment<Rows>(r0, rows).array();
      dg += dyn * ((x.col(n).template segment<Rows>(r0, rows).array() - cache.mean(n)) * cache.rstd(n));
      db += dyn;
    }
    weight.grad.col(0).segment(r0, rows) += dg.matrix();
    bias.grad.col(0).segment(r0, rows) += db.matrix();
  }

  // One column per iteration: mean, centred variance, output. mean/rstd may be null (inference).
  void normalize(const ConstMatRef<Scalar>& x, MatRef<Scalar> y, Scalar* mean, Scalar* rstd) const {
    const Index N = x.cols();
    const auto g = weight.value.col(0).array();
    const auto b = bias.value.col(0).array();
    parallel_for(N, worth_a_team(x.size()), [&](Index n) {
      const auto xn = x.col(n).array();
      const Scalar mu = xn.mean();
      const Scalar var = (xn - mu).square().mean();
      const Scalar rs = Scalar(1) / std::sqrt(var + Scalar(kEps));
      y.col(n) = ((xn - mu) * rs * g + b).matrix();
      if (mean) mean[n] = mu;
      if (rstd) rstd[n] = rs;
    });
  }
};

}  // namespace seqgen
