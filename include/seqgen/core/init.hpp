// Weight initialisers. All draw from seqgen::Rng, so a seed fixes the weights on every platform.
//
//   normal_init(w, rng, std)      w ~ N(0, std²)            GPT-2: std 0.02 for every matrix
//   uniform_init(w, rng, bound)   w ~ U(-bound, bound)
//   fan_in_uniform_init(w, rng)   bound = 1 / sqrt(fan_in)  PyTorch's default for nn.Linear and
//                                                           nn.RNN/LSTM/GRU (fan_in = w.cols())
//   xavier_uniform_init(w, rng)   bound = sqrt(6 / (fan_in + fan_out))   (Glorot & Bengio, 2010)
#pragma once

#include <cmath>

#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {

template <typename Derived>
void normal_init(Eigen::MatrixBase<Derived>& w, Rng& rng, double stddev) {
  for (Index j = 0; j < w.cols(); ++j)
    for (Index i = 0; i < w.rows(); ++i) w(i, j) = static_cast<typename Derived::Scalar>(rng.normal(0.0, stddev));
}

template <typename Derived>
void uniform_init(Eigen::MatrixBase<Derived>& w, Rng& rng, double bound) {
  for (Index j = 0; j < w.cols(); ++j)
    for (Index i = 0; i < w.rows(); ++i) w(i, j) = static_cast<typename Derived::Scalar>(rng.uniform(-bound, bound));
}

// For a weight of shape (out, in): bound 1 / sqrt(in).
template <typename Derived>
void fan_in_uniform_init(Eigen::MatrixBase<Derived>& w, Rng& rng) {
  uniform_init(w, rng, 1.0 / std::sqrt(static_cast<double>(w.cols())));
}

template <typename Derived>
void xavier_uniform_init(Eigen::MatrixBase<Derived>& w, Rng& rng) {
  uniform_init(w, rng, std::sqrt(6.0 / static_cast<double>(w.rows() + w.cols())));
}

}  // namespace seqgen
