// Small helpers shared by the tests.
#pragma once

#include <seqgen/core/gradcheck.hpp>
#include <seqgen/core/init.hpp>
#include <seqgen/core/param.hpp>
#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/recurrent_layer.hpp>

#include <initializer_list>
#include <tuple>
#include <vector>

#include "catch_compat.hpp"

namespace seqgen_test {

using seqgen::Index;
using seqgen::Mat;

// A (rows, cols) matrix with entries ~ U(-scale, scale), fixed by the seed.
template <typename Scalar = double>
Mat<Scalar> random_mat(Index rows, Index cols, std::uint64_t seed, double scale = 1.0) {
  seqgen::Rng rng(seed);
  Mat<Scalar> m(rows, cols);
  seqgen::uniform_init(m, rng, scale);
  return m;
}

// The gradient of every parameter of a module, in for_each_param order.
template <typename Scalar, class Module>
std::vector<Mat<Scalar>> gradients(Module& module) {
  std::vector<Mat<Scalar>> out;
  module.for_each_param([&](seqgen::Param<Scalar>& p) { out.push_back(p.grad); });
  return out;
}

// Checks a gradient-check result and prints the worst element when it fails.
inline void require_grad_ok(const seqgen::GradCheckResult& result) {
  INFO(result.message());
  REQUIRE(result.checked > 0);
  REQUIRE(result.ok);
}

// Checks a recurrent layer whose state is h alone (RNN, GRU) against `reference(cell, x, B, T, h)`,
// an independent implementation that returns every h_t and leaves h_T in h: for each shape
// (D, H, B, T, weight scale, tolerance), on 1 and 2 threads.
using RecurrentShape = std::tuple<Index, Index, Index, Index, double, double>;
template <class Layer, class Reference>
void check_forward_against_reference(const char* name, std::uint64_t seed, std::initializer_list<RecurrentShape> shapes,
                                     Reference&& reference) {
  for (const auto& shape : shapes) {
    Index D, H, B, T;
    double scale, tol;
    std::tie(D, H, B, T, scale, tol) = shape;
    for (int threads : {1, 2}) {
      INFO("D=" << D << " H=" << H << " B=" << B << " T=" << T << ", " << threads << " threads");
      seqgen::Rng rng(seed);
      Layer layer(name, D, H, rng);
      layer.for_each_param([&](seqgen::Param<double>& p) { p.value *= scale; });
      Mat<double> x = random_mat(D, B * T, 8), h_all;
      typename Layer::State s0{random_mat(H, B, 9)}, sT;
      typename Layer::Cache cache;
      const int saved = seqgen::num_threads();
      seqgen::set_num_threads(threads);
      layer.forward(x, B, T, s0, h_all, sT, cache);
      seqgen::set_num_threads(saved);
      Mat<double> h = s0.h;
      const Mat<double> expected = reference(layer.cell, x, B, T, h);
      REQUIRE((h_all - expected).cwiseAbs().maxCoeff() < tol);
      REQUIRE((sT.h - h).cwiseAbs().maxCoeff() < tol);
    }
  }
}

// Gradient check of a recurrent layer (RNN, LSTM, GRU) in double: the parameters, x and every part
// of s0, through L = Σ h_all ⊙ R + Σ s_T ⊙ R_T (so both outputs carry a gradient), for shapes
// (D, H, B, T) with D != H both ways, B = 1 and T = 1.
template <class Layer>
void check_layer_gradients(const char* name, std::uint64_t seed) {
  constexpr bool kCell = seqgen::detail::HasCellState<typename Layer::State>::value;
  for (const auto& shape :
       {std::tuple<Index, Index, Index, Index>{3, 4, 2, 3}, {5, 2, 1, 4}, {2, 3, 3, 1}, {1, 1, 1, 1}}) {
    // Plain variables, not structured bindings: the loss lambda captures them, which C++17 forbids.
    Index D, H, B, T;
    std::tie(D, H, B, T) = shape;
    INFO("D=" << D << " H=" << H << " B=" << B << " T=" << T);
    seqgen::Rng rng(seed);
    Layer layer(name, D, H, rng);
    Mat<double> x = random_mat(D, B * T, 1), R = random_mat(H, B * T, 2), h_all, dx;
    typename Layer::State s0, sT, ds0, R_T;
    s0.h = random_mat(H, B, 3);
    R_T.h = random_mat(H, B, 4);
    if constexpr (kCell) {
      s0.c = random_mat(H, B, 5);
      R_T.c = random_mat(H, B, 6);
    }
    typename Layer::Cache cache;
    layer.forward(x, B, T, s0, h_all, sT, cache);
    seqgen::zero_grad(layer);
    layer.backward(x, B, T, s0, R, R_T, cache, dx, ds0);

    seqgen::GradCheck check;
    check.add("x", x, dx);
    check.add("s0.h", s0.h, ds0.h);
    if constexpr (kCell) check.add("s0.c", s0.c, ds0.c);
    check.add_params(layer);
    require_grad_ok(check.run([&] {
      layer.forward(x, B, T, s0, h_all, sT, cache);
      double loss = (h_all.array() * R.array()).sum() + (sT.h.array() * R_T.h.array()).sum();
      if constexpr (kCell) loss += (sT.c.array() * R_T.c.array()).sum();
      return loss;
    }));
  }
}

}  // namespace seqgen_test
