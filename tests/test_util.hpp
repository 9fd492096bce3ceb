// Small helpers shared by the tests.
#pragma once

#include <seqgen/core/gradcheck.hpp>
#include <seqgen/core/init.hpp>
#include <seqgen/core/param.hpp>
#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/recurrent_common.hpp>

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

// Checks a gradient-check result and prints the worst element when it fails.
inline void require_grad_ok(const seqgen::GradCheckResult& result) {
  INFO(result.message());
  REQUIRE(result.checked > 0);
  REQUIRE(result.ok);
}

// A recurrent layer's forward and backward at 1, 2 and 3 threads. The threads share the B sequences
// out (for_sequence_shares in layers/recurrent_common.hpp), so a bug in a share's columns shows as a
// difference from one thread, which runs the whole batch as one share. Checks h_all, the final state,
// dx, ds0 and every parameter gradient against the 1-thread run to `tol`; returns the 2-thread h_all.
template <typename Scalar, template <typename> class LayerT>
Mat<Scalar> check_thread_shares(const LayerT<Scalar>& fresh, Index B, Index T, double tol) {
  using Layer = LayerT<Scalar>;
  using State = typename Layer::State;
  const Index D = fresh.input_size(), H = fresh.hidden_size();
  const Mat<Scalar> x = random_mat<Scalar>(D, B * T, 41), dh = random_mat<Scalar>(H, B * T, 42);
  auto random_state = [&](std::uint64_t seed) {
    State s = fresh.zero_state(B);
    s.h = random_mat<Scalar>(H, B, seed);
    if constexpr (seqgen::detail::HasCellState<State>::value) s.c = random_mat<Scalar>(H, B, seed + 1);
    return s;
  };
  const State s0 = random_state(43), dsT = random_state(45);
  struct Result {
    Mat<Scalar> h_all, dx;
    State sT, ds0;
    std::vector<Mat<Scalar>> grads;
  };
  auto run = [&](int threads) {
    seqgen::set_num_threads(threads);
    Layer layer = fresh;
    Result r;
    typename Layer::Cache cache;
    layer.forward(x, B, T, s0, r.h_all, r.sT, cache);
    seqgen::zero_grad(layer);
    layer.backward(x, B, T, s0, dh, dsT, cache, r.dx, r.ds0);
    layer.for_each_param([&](seqgen::Param<Scalar>& p) { r.grads.push_back(p.grad); });
    return r;
  };
  auto diff = [](const Mat<Scalar>& a, const Mat<Scalar>& b) { return double((a - b).cwiseAbs().maxCoeff()); };
  const int saved = seqgen::num_threads();
  const Result one = run(1);
  Mat<Scalar> h_all_2;
  for (int threads : {2, 3}) {
    const Result r = run(threads);
    INFO(threads << " threads");
    CHECK(diff(r.h_all, one.h_all) <= tol);
    CHECK(diff(r.sT.h, one.sT.h) <= tol);
    CHECK(diff(r.dx, one.dx) <= tol);
    CHECK(diff(r.ds0.h, one.ds0.h) <= tol);
    if constexpr (seqgen::detail::HasCellState<State>::value) {
      CHECK(diff(r.sT.c, one.sT.c) <= tol);
      CHECK(diff(r.ds0.c, one.ds0.c) <= tol);
    }
    for (std::size_t i = 0; i < one.grads.size(); ++i) CHECK(diff(r.grads[i], one.grads[i]) <= tol * double(B * T));
    if (threads == 2) h_all_2 = r.h_all;
  }
  seqgen::set_num_threads(saved);
  return h_all_2;
}

}  // namespace seqgen_test
