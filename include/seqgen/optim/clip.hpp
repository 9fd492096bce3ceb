// Gradient norm and clipping by global norm, as PyTorch's torch.nn.utils.clip_grad_norm_:
//
//   norm = sqrt(Σ_params Σ_i g_i²)          accumulated in double, whatever Scalar is
//   c = max_norm / (norm + 1e-6)
//   g = c g   for every gradient, when c < 1 (so the clipped norm is max_norm up to the 1e-6)
//
// The sums use a fixed split of each gradient (not one per thread), so the norm is bit-identical
// for any number of threads and a resumed run clips exactly as the original did.
#pragma once

#include <cmath>
#include <type_traits>

#include "seqgen/core/error.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"

namespace seqgen {

namespace detail {

// A gradient of this many values or more is cut into kClipParts contiguous parts, one partial sum
// each (a smaller one is summed in one pass). The split is fixed by the size alone, never by the
// thread count, so the norm is the same on any number of threads.
constexpr Index kClipSplitMin = Index(1) << 16;
constexpr int kClipParts = 64;

// Σ x_i² accumulated in double. Eigen does not vectorise a float -> double cast inside a reduction;
// eight independent accumulators let the compiler do it and hide the latency of the adds.
template <typename Scalar>
double sum_squares(const Scalar* x, Index n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const double v = static_cast<double>(x[i + j]);
      acc[j] += v * v;
    }
  double sum = 0;
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  for (int j = 0; j < 8; ++j) sum += acc[j];
  return sum;
}

template <typename Scalar>
double grad_squared_norm(const Mat<Scalar>& g) {
  const Index n = g.size();
  if (n < kClipSplitMin) return sum_squares(g.data(), n);
  double partial[kClipParts];
  parallel_for(kClipParts, worth_a_team(double(n)), [&](Index k) {
    const Index begin = n * k / kClipParts, end = n * (k + 1) / kClipParts;
    partial[k] = sum_squares(g.data() + begin, end - begin);
  });
  double sum = 0;
  for (int k = 0; k < kClipParts; ++k) sum += partial[k];
  return sum;
}

template <typename Scalar>
void scale_grad(Mat<Scalar>& g, Scalar c) {
  const Index n = g.size();
  if (n < kClipSplitMin) {
    g *= c;
    return;
  }
  parallel_for(kClipParts, worth_a_team(double(n)), [&](Index k) {
    const Index begin = n * k / kClipParts, end = n * (k + 1) / kClipParts;
    Eigen::Map<Vec<Scalar>>(g.data() + begin, end - begin) *= c;
  });
}

}  // namespace detail

// Global L2 norm of all gradients of a layer or model.
template <class Module>
double grad_norm(Module& module) {
  double sum = 0;
  module.for_each_param([&](auto& p) { sum += detail::grad_squared_norm(p.grad); });
  return std::sqrt(sum);
}

// Scales all gradients so that their global norm is at most max_norm (see above) and returns the
// norm before clipping. A non-finite norm is returned with the gradients untouched, so the caller
// can skip the step (PyTorch would instead fill them with NaN).
template <class Module>
double clip_grad_norm(Module& module, double max_norm) {
  check<ConfigError>(std::isfinite(max_norm) && max_norm > 0, "clip_grad_norm: max_norm must be finite and > 0, got ",
                     max_norm);
  const double norm = grad_norm(module);
  if (!std::isfinite(norm)) return norm;
  const double c = max_norm / (norm + 1e-6);
  if (c < 1) {
    module.for_each_param([&](auto& p) {
      using Scalar = typename std::decay_t<decltype(p.grad)>::Scalar;
      detail::scale_grad(p.grad, static_cast<Scalar>(c));
    });
  }
  return norm;
}

}  // namespace seqgen
