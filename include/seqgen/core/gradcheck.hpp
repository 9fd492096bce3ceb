// Numerical gradient checking, public so that users can check their own layers.
//
// For a scalar function L(θ) and each element θ_k of the tensors under test, the central difference
//   numeric_k = (L(θ + eps·e_k) − L(θ − eps·e_k)) / (2·eps)
// is compared with the analytic gradient a_k. An element passes when
//   |a_k − numeric_k| ≤ atol + rtol·|numeric_k|
// which is PyTorch gradcheck's criterion, with its defaults eps 1e-6, atol 1e-5, rtol 1e-3.
// Run it in double: in float, eps 1e-6 is below the rounding error of L.
//
// Usage: build L as a random projection of a layer's output, L = Σ y ⊙ R, so that dL/dy = R.
//   layer.forward(x, y, cache);  zero_grad(layer);  layer.backward(x, R, cache, dx);
//   GradCheck check;
//   check.add("x", x, dx);
//   check.add_params(layer);                        // every Param's value against its grad
//   auto result = check.run([&] { layer.forward(x, y, cache); return (y.array() * R.array()).sum(); });
//   if (!result.ok) std::cerr << result.message();
// The analytic gradients are copied by add(), so the loss function may overwrite them freely.
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "seqgen/core/param.hpp"

namespace seqgen {

struct GradCheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

// The worst element over every tensor checked: the one whose error is largest relative to its
// allowance atol + rtol·|numeric|.
struct GradCheckResult {
  bool ok = true;
  Index checked = 0;  // number of elements compared
  std::string tensor;
  Index row = 0, col = 0;
  double analytic = 0, numeric = 0, abs_err = 0, rel_err = 0;
  double ratio = 0;  // abs_err / (atol + rtol·|numeric|); > 1 means a failure

  std::string message() const {
    std::ostringstream os;
    os << (ok ? "gradient check passed" : "gradient check FAILED") << " (" << checked << " elements); worst: "
       << tensor << "(" << row << ", " << col << ") analytic " << analytic << " numeric " << numeric << " abs err "
       << abs_err << " rel err " << rel_err;
    return os.str();
  }
};

class GradCheck {
 public:
  explicit GradCheck(GradCheckOptions options = {}) : options_(options) {}

  // Checks `value` (perturbed in place, restored afterwards) against the analytic `grad`.
  void add(std::string name, Mat<double>& value, const Mat<double>& grad) {
    check<ShapeError>(value.rows() == grad.rows() && value.cols() == grad.cols(), "GradCheck: tensor '", name, "' is (",
                      value.rows(), ", ", value.cols(), ") but its gradient is (", grad.rows(), ", ", grad.cols(),
                      ")");
    targets_.push_back({std::move(name), &value, grad});
  }

  // Adds every parameter of a layer or model, with its current .grad as the analytic gradient.
  template <typename Module>
  void add_params(Module& module) {
    module.for_each_param([&](Param<double>& p) { add(p.name, p.value, p.grad); });
  }

  GradCheckResult run(const std::function<double()>& loss) const {
    GradCheckResult worst;
    worst.ratio = -1;
    for (const Target& target : targets_) {
      Mat<double>& v = *target.value;
      for (Index j = 0; j < v.cols(); ++j) {
        for (Index i = 0; i < v.rows(); ++i) {
          const double saved = v(i, j);
          v(i, j) = saved + options_.eps;
          const double plus = loss();
          v(i, j) = saved - options_.eps;
          const double minus = loss();
          v(i, j) = saved;
          const double numeric = (plus - minus) / (2 * options_.eps);
          const double analytic = target.grad(i, j);
          const double abs_err = std::abs(analytic - numeric);
          double ratio = abs_err / (options_.atol + options_.rtol * std::abs(numeric));
          if (std::isnan(ratio)) ratio = INFINITY;
          ++worst.checked;
          if (ratio > worst.ratio) {
            worst.ratio = ratio;
            worst.tensor = target.name;
            worst.row = i;
            worst.col = j;
            worst.analytic = analytic;
            worst.numeric = numeric;
            worst.abs_err = abs_err;
            worst.rel_err = abs_err / std::max(std::abs(numeric), 1e-300);
          }
        }
      }
    }
    worst.ok = worst.ratio <= 1.0;
    return worst;
  }

 private:
  struct Target {
    std::string name;
    Mat<double>* value;
    Mat<double> grad;
  };
  GradCheckOptions options_;
  std::vector<Target> targets_;
};

}  // namespace seqgen
