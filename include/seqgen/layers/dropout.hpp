// Inverted dropout (Srivastava et al., 2014), as PyTorch's nn.Dropout(p):
//
//   training:   m_ij = 0 with probability p, else 1 / (1 − p)      y = x ⊙ m      dx = dy ⊙ m
//   evaluation: y = x, dx = dy
// Scaling the survivors at training time keeps E[y] = x, so evaluation needs no rescaling.
// With p = 0 both modes are the identity and draw nothing from the generator.
//
// The mask is drawn serially in column-major order, one rng.uniform() per element, so a seed fixes
// it for every thread count and platform.
//
// Contract: forward ASSIGNS y and, in training with p > 0, cache.mask (otherwise the cache is left
// untouched). backward ASSIGNS dx. x may have any shape; dy must have the shape of the mask.
#pragma once

#include "seqgen/core/error.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {

template <typename Scalar>
struct Dropout {
  double p = 0;  // probability of zeroing an element, in [0, 1)

  struct Cache {
    Mat<Scalar> mask;  // same shape as x; entries 0 or 1 / (1 − p)
  };

  explicit Dropout(double p_ = 0) : p(p_) {
    check<ConfigError>(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got ", p);
  }

  bool active(bool training) const { return training && p > 0; }

  void forward(const ConstMatRef<Scalar>& x, Mat<Scalar>& y, Cache& cache, Rng& rng, bool training) const {
    ensure_shape(y, x.rows(), x.cols());
    if (!active(training)) {
      parallel_copy<Scalar>(y, x);
      return;
    }
    const Scalar keep_scale = static_cast<Scalar>(1.0 / (1.0 - p));
    Mat<Scalar>& m = cache.mask;
    ensure_shape(m, x.rows(), x.cols());
    for (Index j = 0; j < m.cols(); ++j)
      for (Index i = 0; i < m.rows(); ++i) m(i, j) = rng.uniform() < p ? Scalar(0) : keep_scale;
    y.array() = x.array() * m.array();
  }

  void backward(const ConstMatRef<Scalar>& dy, const Cache& cache, Mat<Scalar>& dx, bool training) const {
    ensure_shape(dx, dy.rows(), dy.cols());
    if (!active(training)) {
      parallel_copy<Scalar>(dx, dy);
      return;
    }
    check<ShapeError>(cache.mask.rows() == dy.rows() && cache.mask.cols() == dy.cols(), "Dropout: dy is (", dy.rows(),
                      ", ", dy.cols(), ") but the mask from forward is (", cache.mask.rows(), ", ", cache.mask.cols(),
                      ")");
    dx.array() = dy.array() * cache.mask.array();
  }

  // No parameters; present so that generic code can visit every member of a model alike.
  template <class Visit>
  void for_each_param(Visit&&) {}
};

}  // namespace seqgen
