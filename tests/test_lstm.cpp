// What is the LSTM's own: its equations against an independent scalar reference, closed forms,
// gradient checks, names. What every recurrent layer shares is tested in test_recurrent.cpp.
#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/lstm.hpp>

#include <cmath>
#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace test_lstm {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

using Layer = LstmLayer<double>;

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// The LSTM equations one scalar at a time, written independently of lstm.hpp.
// x: (D, B*T) in the seqgen layout; returns h_all and the final (h, c).
struct Reference {
  Mat<double> h_all, h, c;
};
Reference reference_lstm(const LstmCell<double>& cell, const Mat<double>& x, Index B, Index T, const Mat<double>& h0,
                         const Mat<double>& c0) {
  const Index D = x.rows(), H = h0.rows();
  Reference out{Mat<double>(H, B * T), h0, c0};
  std::vector<double> a(4 * H);
  for (Index b = 0; b < B; ++b) {
    for (Index t = 0; t < T; ++t) {
      const Index n = b * T + t;
      for (Index k = 0; k < 4 * H; ++k) {
        double sum = cell.bias_ih.value(k, 0) + cell.bias_hh.value(k, 0);
        for (Index d = 0; d < D; ++d) sum += cell.weight_ih.value(k, d) * x(d, n);
        for (Index j = 0; j < H; ++j) sum += cell.weight_hh.value(k, j) * out.h(j, b);
        a[k] = sum;
      }
      for (Index j = 0; j < H; ++j) {
        const double i = sigmoid(a[j]), f = sigmoid(a[H + j]), g = std::tanh(a[2 * H + j]), o = sigmoid(a[3 * H + j]);
        out.c(j, b) = f * out.c(j, b) + i * g;
        out.h(j, b) = o * std::tanh(out.c(j, b));
        out.h_all(j, n) = out.h(j, b);
      }
    }
  }
  return out;
}

double max_abs_diff(const Mat<double>& a, const Mat<double>& b) { return (a - b).cwiseAbs().maxCoeff(); }

}  // namespace

TEST_CASE("LSTM: gradient check of parameters, x, s0.h and s0.c, through h_all and the final state",
          "[lstm][gradcheck]") {
  seqgen_test::check_layer_gradients<Layer>("lstm", 11);
}

TEST_CASE("LSTM: forward matches a scalar implementation of the equations, on 1 and 2 threads", "[lstm][threads]") {
  // (D, H, B, T, weight scale, tolerance): small, with larger weights than the default so the gates
  // leave their linear range; then wide enough (4H·H·B multiply-adds per step) for the threads to
  // share the sequences out.
  for (const auto& shape : {std::tuple<Index, Index, Index, Index, double, double>{3, 5, 3, 4, 3.0, 1e-13},
                            {8, 96, 8, 5, 1.0, 1e-12}}) {
    Index D, H, B, T;
    double scale, tol;
    std::tie(D, H, B, T, scale, tol) = shape;
    for (int threads : {1, 2}) {
      INFO("D=" << D << " H=" << H << " B=" << B << " T=" << T << ", " << threads << " threads");
      Rng rng(13);
      Layer layer("lstm", D, H, rng);
      layer.for_each_param([&](Param<double>& p) { p.value *= scale; });
      Mat<double> x = random_mat(D, B * T, 14), h_all;
      Layer::State s0{random_mat(H, B, 15), random_mat(H, B, 16)}, sT;
      Layer::Cache cache;
      const int saved = num_threads();
      set_num_threads(threads);
      layer.forward(x, B, T, s0, h_all, sT, cache);
      set_num_threads(saved);
      const Reference ref = reference_lstm(layer.cell, x, B, T, s0.h, s0.c);
      REQUIRE(max_abs_diff(h_all, ref.h_all) < tol);
      REQUIRE(max_abs_diff(sT.h, ref.h) < tol);
      REQUIRE(max_abs_diff(sT.c, ref.c) < tol);
    }
  }
}

TEST_CASE("LSTM: zero weights give constant gates and a geometric cell state", "[lstm]") {
  // With W_ih = W_hh = 0 the gates are constant: i = σ(b_i), f = σ(b_f), g = tanh(b_g), o = σ(b_o), so
  //   c_t = f^t c_0 + i g (1 − f^t) / (1 − f)      h_t = o tanh(c_t)      (t = 1, 2, ...)
  const Index D = 3, H = 2, B = 2, T = 4;
  Rng rng(17);
  Layer layer("lstm", D, H, rng);
  layer.cell.weight_ih.value.setZero();
  layer.cell.weight_hh.value.setZero();
  // b_ih + b_hh per unit: i = (0.5, -1), f = (1, 2), g = (-0.3, 0.7), o = (0.2, -2).
  const double bsum[8] = {0.5, -1.0, 1.0, 2.0, -0.3, 0.7, 0.2, -2.0};
  for (int k = 0; k < 8; ++k) {
    layer.cell.bias_ih.value(k, 0) = 0.25 * bsum[k];
    layer.cell.bias_hh.value(k, 0) = 0.75 * bsum[k];
  }
  Mat<double> x = random_mat(D, B * T, 18), h_all;
  Layer::State s0{random_mat(H, B, 19), random_mat(H, B, 20)}, sT;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  for (Index j = 0; j < H; ++j) {
    const double i = sigmoid(bsum[j]), f = sigmoid(bsum[H + j]), g = std::tanh(bsum[2 * H + j]),
                 o = sigmoid(bsum[3 * H + j]);
    for (Index b = 0; b < B; ++b)
      for (Index t = 1; t <= T; ++t) {
        const double ft = std::pow(f, static_cast<double>(t));
        const double c = ft * s0.c(j, b) + i * g * (1 - ft) / (1 - f);
        REQUIRE(h_all(j, b * T + t - 1) == Approx(o * std::tanh(c)).epsilon(1e-13));
        if (t == T) REQUIRE(sT.c(j, b) == Approx(c).epsilon(1e-13));
      }
  }
}

TEST_CASE("LSTM: PyTorch names and shapes, U(-1/sqrt(H), 1/sqrt(H)) initialisation", "[lstm]") {
  const Index D = 7, H = 9;
  Rng rng(35);
  Layer layer("decoder.lstm", D, H, rng);
  REQUIRE(layer.input_size() == D);
  REQUIRE(layer.hidden_size() == H);
  REQUIRE(count_params(layer) == 4 * H * (D + H + 2));
  std::vector<std::tuple<std::string, Index, Index>> seen;
  layer.for_each_param([&](Param<double>& p) {
    seen.emplace_back(p.name, p.value.rows(), p.value.cols());
    const double bound = 1.0 / 3.0;  // 1/sqrt(9)
    REQUIRE(p.value.cwiseAbs().maxCoeff() <= bound);
    REQUIRE(p.value.cwiseAbs().maxCoeff() > 0.8 * bound);  // spread over the range, not a smaller one
  });
  REQUIRE(seen == std::vector<std::tuple<std::string, Index, Index>>{{"decoder.lstm.weight_ih", 4 * H, D},
                                                                      {"decoder.lstm.weight_hh", 4 * H, H},
                                                                      {"decoder.lstm.bias_ih", 4 * H, 1},
                                                                      {"decoder.lstm.bias_hh", 4 * H, 1}});
}

}  // namespace test_lstm
