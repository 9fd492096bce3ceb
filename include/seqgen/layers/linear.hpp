// Linear layer:  y = W x + b
//
//   x: (in, N)   W: (out, in)   b: (out)   y: (out, N)
// Backward, with dy = ∂L/∂y:
//   dW += dy xᵀ      db += Σ_n dy[:, n]      dx = Wᵀ dy
// Each is one GEMM (or a row sum) over all N tokens.
//
// Inference by a thread team (a decoding step): pack(w) copies W into a PackedMatrix once, and
// forward_packed(w, x, y, accumulate, team) has each thread of the team compute its share of y's
// rows, y = W x + b or y += W x + b, from the packed copy.
//
// Contract: forward ASSIGNS y (resized if needed). backward ADDS into weight.grad and bias.grad and
// ASSIGNS dx. Linear keeps no cache: backward reads the same x that forward was given.
#pragma once

#include <algorithm>
#include <string>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"

namespace seqgen {

template <typename Scalar>
struct Linear {
  Param<Scalar> weight;  // (out, in)
  Param<Scalar> bias;    // (out, 1), or (0, 0) when the layer has no bias
  std::string name;

  Linear() = default;
  // PyTorch's default initialisation: W and b ~ U(-1/sqrt(in), 1/sqrt(in)).
  Linear(std::string name_, Index in, Index out, Rng& rng, bool with_bias = true)
      : weight(join_name(name_, "weight"), out, in), name(std::move(name_)) {
    check<ConfigError>(in > 0 && out > 0, "Linear '", name, "': sizes must be positive, got in=", in, " out=", out);
    fan_in_uniform_init(weight.value, rng);
    if (with_bias) {
      bias = Param<Scalar>(join_name(name, "bias"), out, 1);
      uniform_init(bias.value, rng, 1.0 / std::sqrt(static_cast<double>(in)));
    }
  }

  Index in_features() const { return weight.value.cols(); }
  Index out_features() const { return weight.value.rows(); }
  bool has_bias() const { return bias.size() > 0; }

  // x: (in, N) -> y: (out, N)
  void forward(const ConstMatRef<Scalar>& x, Mat<Scalar>& y) const {
    check_input(x);
    ensure_shape(y, out_features(), x.cols());
    gemm<Scalar>(weight.value, false, x, false, y, false);
    if (has_bias()) add_to_columns<Scalar>(y, bias.value);
  }

  // Same as above into a pre-sized view, e.g. a block of a bigger workspace.
  void forward_into(const ConstMatRef<Scalar>& x, MatRef<Scalar> y) const {
    check_input(x);
    check<ShapeError>(y.rows() == out_features() && y.cols() == x.cols(), "Linear '", name, "': output is (", y.rows(),
                      ", ", y.cols(), "), expected (", out_features(), ", ", x.cols(), ")");
    gemm<Scalar>(weight.value, false, x, false, y, false);
    if (has_bias()) add_to_columns<Scalar>(y, bias.value);
  }

  // W packed for forward_packed. A copy: pack again after the weights change.
  void pack(PackedMatrix<Scalar>& w) const { w.pack(weight.value, false); }

  // x: (in, N) -> rows [r0, r1) of y: (out, N), this thread's share of the rows, as its panel share
  // of w (= pack() of this layer): y = W x + b, or y += W x + b when accumulating. Returns
  // {r0, r1}. The team's threads write disjoint rows and need no barrier before returning.
  std::pair<Index, Index> forward_packed(const PackedMatrix<Scalar>& w, const ConstMatRef<Scalar>& x, MatRef<Scalar> y,
                                         bool accumulate, const Team& team) const {
    check<ShapeError>(w.rows() == out_features() && w.cols() == in_features(), "Linear '", name,
                      "': the packed matrix is (", w.rows(), ", ", w.cols(), "), expected (", out_features(), ", ",
                      in_features(), ") (pack it from this layer)");
    Index p0, p1;
    team.share(w.panels(), p0, p1);
    w.multiply(x, y, accumulate, p0, p1);
    const Index r0 = std::min(p0 * w.kPanel, out_features()), r1 = std::min(p1 * w.kPanel, out_features());
    if (has_bias() && r1 > r0) y.middleRows(r0, r1 - r0).colwise() += bias.value.col(0).segment(r0, r1 - r0);
    return {r0, r1};
  }

  // x: (in, N), dy: (out, N) -> dx: (in, N). Pass dx = nullptr to skip the input gradient. dx may
  // be x itself: the weight's gradient is taken before dx is written.
  void backward(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, Mat<Scalar>* dx) {
    check_input(x);
    check<ShapeError>(dy.rows() == out_features() && dy.cols() == x.cols(), "Linear '", name, "': dy is (", dy.rows(),
                      ", ", dy.cols(), "), expected (", out_features(), ", ", x.cols(), ")");
    gemm<Scalar>(dy, false, x, true, weight.grad, true);
    if (has_bias()) add_row_sums<Scalar>(bias.grad, dy);
    if (dx) {
      ensure_shape(*dx, in_features(), x.cols());
      gemm<Scalar>(weight.value, true, dy, false, *dx, false);
    }
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight);
    if (has_bias()) visit(bias);
  }

 private:
  void check_input(const ConstMatRef<Scalar>& x) const {
    check<ShapeError>(x.rows() == in_features(), "Linear '", name, "': input has ", x.rows(), " rows, expected ",
                      in_features(), " (in_features)");
  }
};

}  // namespace seqgen
