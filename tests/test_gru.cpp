// What is the GRU's own: its equations against an independent scalar reference, closed forms,
// gradient checks, names. What every recurrent layer shares is tested in test_recurrent.cpp.
#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/gru.hpp>

#include <cmath>
#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace test_gru {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::check_forward_against_reference;
using seqgen_test::random_mat;

namespace {

using Layer = GruLayer<double>;

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// PyTorch's GRU equations one scalar at a time, written independently of gru.hpp.
// x: (D, B*T) in the seqgen layout; returns h_all and overwrites h (H, B) with the final state.
Mat<double> reference_gru(const GruCell<double>& cell, const Mat<double>& x, Index B, Index T, Mat<double>& h) {
  const Index D = x.rows(), H = h.rows();
  Mat<double> h_all(H, B * T);
  std::vector<double> gi(3 * H), gh(3 * H);
  for (Index b = 0; b < B; ++b) {
    for (Index t = 0; t < T; ++t) {
      const Index col = b * T + t;
      for (Index k = 0; k < 3 * H; ++k) {
        gi[k] = cell.bias_ih.value(k, 0);
        gh[k] = cell.bias_hh.value(k, 0);
        for (Index d = 0; d < D; ++d) gi[k] += cell.weight_ih.value(k, d) * x(d, col);
        for (Index j = 0; j < H; ++j) gh[k] += cell.weight_hh.value(k, j) * h(j, b);
      }
      for (Index j = 0; j < H; ++j) {
        const double r = sigmoid(gi[j] + gh[j]), z = sigmoid(gi[H + j] + gh[H + j]);
        const double n = std::tanh(gi[2 * H + j] + r * gh[2 * H + j]);
        h(j, b) = h_all(j, col) = (1 - z) * n + z * h(j, b);
      }
    }
  }
  return h_all;
}

}  // namespace

TEST_CASE("GRU: gradient check of parameters, x and s0, through h_all and the final state", "[gru][gradcheck]") {
  seqgen_test::check_layer_gradients<Layer>("gru", 61);
}

TEST_CASE("GRU: forward matches a scalar implementation of PyTorch's equations, on 1 and 2 threads",
          "[gru][threads]") {
  // (D, H, B, T, weight scale, tolerance): small, with weights out of the gates' linear range; then
  // wide enough (3H·H·B multiply-adds per step) for the threads to share the sequences out.
  check_forward_against_reference<Layer>("gru", 63, {{3, 5, 3, 4, 3.0, 1e-13}, {8, 96, 11, 5, 1.0, 1e-12}},
                                         reference_gru);
}

TEST_CASE("GRU: zero weights give constant gates and h_t = n + z^t (h_0 - n)", "[gru]") {
  // With W_ih = W_hh = 0: r = σ(b_ir + b_hr), z = σ(b_iz + b_hz), n = tanh(b_in + r b_hn), constant in t,
  // and h_t = (1 − z) n + z h_{t−1} unrolls to h_t = n + z^t (h_0 − n).
  const Index D = 3, H = 2, B = 2, T = 4;
  Rng rng(64);
  Layer layer("gru", D, H, rng);
  layer.cell.weight_ih.value.setZero();
  layer.cell.weight_hh.value.setZero();
  layer.cell.bias_ih.value << 0.3, -0.5, 1.0, -2.0, 0.4, 0.9;   // ir, iz, in per unit
  layer.cell.bias_hh.value << 0.2, 0.1, -0.5, 1.5, -1.2, 0.6;   // hr, hz, hn per unit
  Mat<double> x = random_mat(D, B * T, 10), h_all;
  Layer::State s0{random_mat(H, B, 11)}, sT;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  const double r[2] = {sigmoid(0.3 + 0.2), sigmoid(-0.5 + 0.1)};
  const double z[2] = {sigmoid(1.0 - 0.5), sigmoid(-2.0 + 1.5)};
  const double n[2] = {std::tanh(0.4 + r[0] * -1.2), std::tanh(0.9 + r[1] * 0.6)};
  for (Index j = 0; j < H; ++j)
    for (Index b = 0; b < B; ++b)
      for (Index t = 1; t <= T; ++t) {
        const double expected = n[j] + std::pow(z[j], static_cast<double>(t)) * (s0.h(j, b) - n[j]);
        REQUIRE(h_all(j, b * T + t - 1) == Approx(expected).epsilon(1e-13));
      }
}

TEST_CASE("GRU: PyTorch names and shapes, U(-1/sqrt(H), 1/sqrt(H)) initialisation", "[gru]") {
  const Index D = 7, H = 9;
  Rng rng(68);
  Layer layer("decoder.gru", D, H, rng);
  REQUIRE(count_params(layer) == 3 * H * (D + H + 2));
  std::vector<std::tuple<std::string, Index, Index>> seen;
  layer.for_each_param([&](Param<double>& p) {
    seen.emplace_back(p.name, p.value.rows(), p.value.cols());
    const double bound = 1.0 / 3.0;  // 1/sqrt(9)
    REQUIRE(p.value.cwiseAbs().maxCoeff() <= bound);
    REQUIRE(p.value.cwiseAbs().maxCoeff() > 0.8 * bound);
  });
  REQUIRE(seen == std::vector<std::tuple<std::string, Index, Index>>{{"decoder.gru.weight_ih", 3 * H, D},
                                                                      {"decoder.gru.weight_hh", 3 * H, H},
                                                                      {"decoder.gru.bias_ih", 3 * H, 1},
                                                                      {"decoder.gru.bias_hh", 3 * H, 1}});
}

}  // namespace test_gru
