// What is the Elman RNN (and ElmanRnn)'s own: its equations against an independent scalar reference, closed forms,
// gradient checks, names. What every recurrent layer shares is tested in test_recurrent.cpp.
#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/rnn.hpp>

#include <cmath>
#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace test_rnn {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::check_forward_against_reference;
using seqgen_test::random_mat;

namespace {

using Layer = RnnLayer<double>;

// h_t = tanh(W_hh h_{t−1} + W_ih x_t + b) one scalar at a time, written independently of rnn.hpp.
// x: (D, B*T) in the seqgen layout; returns h_all and overwrites h (H, B) with the final state.
Mat<double> reference_rnn(const RnnCell<double>& cell, const Mat<double>& x, Index B, Index T, Mat<double>& h) {
  const Index D = x.rows(), H = h.rows();
  Mat<double> h_all(H, B * T);
  std::vector<double> next(H);
  for (Index b = 0; b < B; ++b) {
    for (Index t = 0; t < T; ++t) {
      const Index n = b * T + t;
      for (Index k = 0; k < H; ++k) {
        double sum = cell.bias.value(k, 0);
        for (Index d = 0; d < D; ++d) sum += cell.weight_ih.value(k, d) * x(d, n);
        for (Index j = 0; j < H; ++j) sum += cell.weight_hh.value(k, j) * h(j, b);
        next[k] = std::tanh(sum);
      }
      for (Index k = 0; k < H; ++k) h(k, b) = h_all(k, n) = next[k];
    }
  }
  return h_all;
}

double max_abs_diff(const Mat<double>& a, const Mat<double>& b) { return (a - b).cwiseAbs().maxCoeff(); }

}  // namespace

TEST_CASE("RNN: gradient check of parameters, x and s0, through h_all and the final state", "[rnn][gradcheck]") {
  seqgen_test::check_layer_gradients<Layer>("rnn", 41);
}

TEST_CASE("RNN: forward matches a scalar implementation of the equation, on 1 and 2 threads", "[rnn][threads]") {
  // (D, H, B, T, weight scale, tolerance): small, with weights out of tanh's linear range; then wide
  // enough (H·H·B multiply-adds per step) for the threads to share the sequences out.
  check_forward_against_reference<Layer>("rnn", 43, {{3, 5, 3, 4, 3.0, 1e-13}, {8, 160, 11, 5, 1.0, 1e-12}},
                                         reference_rnn);
}

TEST_CASE("RNN: closed forms with zero and with scalar weights", "[rnn]") {
  SECTION("zero weights: h_t = tanh(b) at every step, whatever x and s0") {
    const Index D = 3, H = 4, B = 2, T = 3;
    Rng rng(44);
    Layer layer("rnn", D, H, rng);
    layer.cell.weight_ih.value.setZero();
    layer.cell.weight_hh.value.setZero();
    layer.cell.bias.value << 0.5, -1.0, 2.0, 0.0;
    Mat<double> x = random_mat(D, B * T, 10), h_all;
    Layer::State s0{random_mat(H, B, 11)}, sT;
    Layer::Cache cache;
    layer.forward(x, B, T, s0, h_all, sT, cache);
    const double expected[4] = {std::tanh(0.5), std::tanh(-1.0), std::tanh(2.0), 0.0};
    for (Index n = 0; n < B * T; ++n)
      for (Index k = 0; k < H; ++k) REQUIRE(h_all(k, n) == Approx(expected[k]).epsilon(1e-15).margin(1e-300));
  }
  SECTION("D = H = 1: h_1 = tanh(0.5 x_1 − 0.8 h_0 + 0.1), h_2 = tanh(0.5 x_2 − 0.8 h_1 + 0.1)") {
    Rng rng(45);
    Layer layer("rnn", 1, 1, rng);
    layer.cell.weight_ih.value(0, 0) = 0.5;
    layer.cell.weight_hh.value(0, 0) = -0.8;
    layer.cell.bias.value(0, 0) = 0.1;
    Mat<double> x(1, 2), h_all;
    x << 2.0, -1.0;
    Layer::State s0{Mat<double>::Constant(1, 1, 0.3)}, sT;
    Layer::Cache cache;
    layer.forward(x, 1, 2, s0, h_all, sT, cache);
    const double h1 = std::tanh(0.5 * 2.0 - 0.8 * 0.3 + 0.1), h2 = std::tanh(0.5 * -1.0 - 0.8 * h1 + 0.1);
    REQUIRE(h_all(0, 0) == Approx(h1).epsilon(1e-15));
    REQUIRE(h_all(0, 1) == Approx(h2).epsilon(1e-15));
    REQUIRE(sT.h(0, 0) == Approx(h2).epsilon(1e-15));
  }
}

TEST_CASE("RNN: names and shapes, U(-1/sqrt(H), 1/sqrt(H)) initialisation", "[rnn]") {
  const Index D = 7, H = 16;
  Rng rng(49);
  Layer layer("enc", D, H, rng);
  REQUIRE(count_params(layer) == H * (D + H + 1));
  std::vector<std::tuple<std::string, Index, Index>> seen;
  layer.for_each_param([&](Param<double>& p) {
    seen.emplace_back(p.name, p.value.rows(), p.value.cols());
    REQUIRE(p.value.cwiseAbs().maxCoeff() <= 0.25);  // 1/sqrt(16)
    REQUIRE(p.value.cwiseAbs().maxCoeff() > 0.2);
  });
  REQUIRE(seen == std::vector<std::tuple<std::string, Index, Index>>{
                      {"enc.weight_ih", H, D}, {"enc.weight_hh", H, H}, {"enc.bias", H, 1}});
}

// ---- ElmanRnn: RnnLayer + Linear read-out ----

TEST_CASE("ElmanRnn: gradient check of every parameter, x and s0, through y and the final state",
          "[rnn][elman][gradcheck]") {
  for (const auto& shape :
       {std::tuple<Index, Index, Index, Index, Index>{3, 4, 5, 2, 3}, {2, 3, 1, 1, 1}, {4, 2, 3, 3, 2}}) {
    Index D, H, O, B, T;
    std::tie(D, H, O, B, T) = shape;
    INFO("D=" << D << " H=" << H << " O=" << O << " B=" << B << " T=" << T);
    Rng rng(52);
    ElmanRnn<double> net("elman", D, H, O, rng);
    Mat<double> x = random_mat(D, B * T, 22), R = random_mat(O, B * T, 23), y, dx;
    ElmanRnn<double>::State s0{random_mat(H, B, 24)}, sT, ds0;
    const ElmanRnn<double>::State R_T{random_mat(H, B, 25)};
    ElmanRnn<double>::Cache cache;
    net.forward(x, B, T, s0, y, sT, cache);
    zero_grad(net);
    net.backward(x, B, T, s0, R, R_T, cache, dx, ds0);

    GradCheck check;
    check.add("x", x, dx);
    check.add("s0.h", s0.h, ds0.h);
    check.add_params(net);
    seqgen_test::require_grad_ok(check.run([&] {
      net.forward(x, B, T, s0, y, sT, cache);
      return (y.array() * R.array()).sum() + (sT.h.array() * R_T.h.array()).sum();
    }));
  }
}

TEST_CASE("ElmanRnn: y_t = W_hy h_t + b_y on the reference h_t; step() gives the same y; names", "[rnn][elman]") {
  const Index D = 3, H = 4, O = 2, B = 2, T = 3;
  Rng rng(53);
  ElmanRnn<double> net("lm", D, H, O, rng);
  REQUIRE(net.output_size() == O);
  std::vector<std::string> names;
  net.for_each_param([&](Param<double>& p) { names.push_back(p.name); });
  REQUIRE(names == std::vector<std::string>{"lm.rnn.weight_ih", "lm.rnn.weight_hh", "lm.rnn.bias",
                                            "lm.readout.weight", "lm.readout.bias"});

  Mat<double> x = random_mat(D, B * T, 26), y;
  ElmanRnn<double>::State s0{random_mat(H, B, 27)}, sT;
  ElmanRnn<double>::Cache cache;
  net.forward(x, B, T, s0, y, sT, cache);
  Mat<double> h = s0.h;
  const Mat<double> h_all = reference_rnn(net.rnn.cell, x, B, T, h);
  for (Index n = 0; n < B * T; ++n)
    for (Index o = 0; o < O; ++o) {
      double expected = net.readout.bias.value(o, 0);
      for (Index k = 0; k < H; ++k) expected += net.readout.weight.value(o, k) * h_all(k, n);
      REQUIRE(y(o, n) == Approx(expected).epsilon(1e-13));
    }

  ElmanRnn<double>::State s = s0;
  ElmanRnn<double>::StepWorkspace ws;
  Mat<double> y_t;
  for (Index t = 0; t < T; ++t) {
    net.step(time_slice(x, t, B, T), s, ws, y_t);
    REQUIRE(max_abs_diff(y_t, time_slice(y, t, B, T)) < 1e-12);
  }
}

TEST_CASE("ElmanRnn: errors are caught before any gradient is touched", "[rnn][elman][errors]") {
  Rng rng(54);
  ElmanRnn<double> net("lm", 3, 4, 2, rng);
  const Index B = 2, T = 3;
  Mat<double> x = random_mat(3, B * T, 28), y, dx, dy = random_mat(2, B * T, 29);
  ElmanRnn<double>::State s0 = net.zero_state(B), sT, ds0;
  ElmanRnn<double>::Cache cache;
  net.forward(x, B, T, s0, y, sT, cache);
  zero_grad(net);
  SEQGEN_THROWS_WITH(net.backward(Mat<double>(3, 5), B, T, s0, dy, ElmanRnn<double>::State{}, cache, dx, ds0),
                     ShapeError, "ElmanRnn 'lm': input has 5 columns, expected B*T = 6");
  SEQGEN_THROWS_WITH(net.backward(x, B, T, net.zero_state(1), dy, ElmanRnn<double>::State{}, cache, dx, ds0),
                     ShapeError, "ElmanRnn 'lm': s0.h is (4, 1), expected (4, 2)");
  SEQGEN_THROWS_WITH(net.backward(x, B, T, s0, dy, ElmanRnn<double>::State{Mat<double>(1, 1)}, cache, dx, ds0),
                     ShapeError, "ElmanRnn 'lm': dsT.h is (1, 1), expected (4, 2) = (hidden_size, B) or empty");
  SEQGEN_THROWS_WITH(net.backward(x, 3, 2, net.zero_state(3), dy, ElmanRnn<double>::State{}, cache, dx, ds0),
                     ShapeError,
                     "ElmanRnn 'lm': backward called with B=3, T=2 but the cache holds a forward with B=2, T=3");
  SEQGEN_THROWS_WITH(net.backward(x, B, T, s0, Mat<double>(3, 6), ElmanRnn<double>::State{}, cache, dx, ds0),
                     ShapeError, "Linear 'lm.readout': dy is (3, 6), expected (2, 6)");
  double grad_norm = 0;
  net.for_each_param([&](Param<double>& p) { grad_norm += p.grad.norm(); });
  REQUIRE(grad_norm == 0.0);
}

}  // namespace test_rnn
