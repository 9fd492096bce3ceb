#include <seqgen/layers/gru.hpp>

#include <cmath>
#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace test_gru {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
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

// Steps [t0, t0 + len) of every sequence of a (rows, B*T) matrix, as a (rows, B*len) matrix.
Mat<double> chunk(const Mat<double>& m, Index B, Index T, Index t0, Index len) {
  Mat<double> out(m.rows(), B * len);
  for (Index b = 0; b < B; ++b) out.middleCols(b * len, len) = m.middleCols(b * T + t0, len);
  return out;
}

double max_abs_diff(const Mat<double>& a, const Mat<double>& b) { return (a - b).cwiseAbs().maxCoeff(); }

}  // namespace

TEST_CASE("GRU: gradient check of parameters, x and s0, through h_all and the final state", "[gru][gradcheck]") {
  // (D, H, B, T): D != H both ways, B = 1, T = 1. Plain variables, not structured bindings: the loss
  // lambda captures them, which C++17 does not allow for bindings.
  for (const auto& shape :
       {std::tuple<Index, Index, Index, Index>{3, 4, 2, 3}, {5, 2, 1, 4}, {2, 3, 3, 1}, {1, 1, 1, 1}}) {
    Index D, H, B, T;
    std::tie(D, H, B, T) = shape;
    INFO("D=" << D << " H=" << H << " B=" << B << " T=" << T);
    Rng rng(61);
    Layer layer("gru", D, H, rng);
    Mat<double> x = random_mat(D, B * T, 1), R = random_mat(H, B * T, 2), h_all, dx;
    Layer::State s0{random_mat(H, B, 3)}, sT, ds0;
    const Layer::State R_T{random_mat(H, B, 4)};
    Layer::Cache cache;
    layer.forward(x, B, T, s0, h_all, sT, cache);
    zero_grad(layer);
    layer.backward(x, B, T, s0, R, R_T, cache, dx, ds0);

    GradCheck check;
    check.add("x", x, dx);
    check.add("s0.h", s0.h, ds0.h);
    check.add_params(layer);
    seqgen_test::require_grad_ok(check.run([&] {
      layer.forward(x, B, T, s0, h_all, sT, cache);
      return (h_all.array() * R.array()).sum() + (sT.h.array() * R_T.h.array()).sum();
    }));
  }
}

TEST_CASE("GRU: an empty dsT stands for a zero gradient into the final state", "[gru][gradcheck]") {
  const Index D = 2, H = 3, B = 2, T = 3;
  Rng rng(62);
  Layer layer("gru", D, H, rng);
  Mat<double> x = random_mat(D, B * T, 5), R = random_mat(H, B * T, 6), h_all, dx;
  Layer::State s0{random_mat(H, B, 7)}, sT, ds0;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  zero_grad(layer);
  layer.backward(x, B, T, s0, R, Layer::State{}, cache, dx, ds0);

  GradCheck check;
  check.add("x", x, dx);
  check.add("s0.h", s0.h, ds0.h);
  check.add_params(layer);
  seqgen_test::require_grad_ok(check.run([&] {
    layer.forward(x, B, T, s0, h_all, sT, cache);
    return (h_all.array() * R.array()).sum();
  }));
}

TEST_CASE("GRU: forward matches a scalar implementation of PyTorch's equations", "[gru]") {
  const Index D = 3, H = 5, B = 3, T = 4;
  Rng rng(63);
  Layer layer("gru", D, H, rng);
  layer.for_each_param([](Param<double>& p) { p.value *= 3.0; });  // out of the gates' linear range
  Mat<double> x = random_mat(D, B * T, 8), h_all;
  Layer::State s0{random_mat(H, B, 9)}, sT;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  Mat<double> h = s0.h;
  const Mat<double> expected = reference_gru(layer.cell, x, B, T, h);
  REQUIRE(max_abs_diff(h_all, expected) < 1e-13);
  REQUIRE(max_abs_diff(sT.h, h) < 1e-13);
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

TEST_CASE("GRU: step() applied T times equals forward()", "[gru]") {
  const Index D = 4, H = 3, B = 2, T = 5;
  Rng rng(65);
  Layer layer("gru", D, H, rng);
  Mat<double> x = random_mat(D, B * T, 12), h_all;
  Layer::State s0{random_mat(H, B, 13)}, sT;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);

  Layer::State s = s0;
  Layer::StepWorkspace ws;
  const double* buffer = nullptr;
  for (Index t = 0; t < T; ++t) {
    const Mat<double> x_t = time_slice(x, t, B, T);
    layer.step(x_t, s, ws);
    if (t == 0) buffer = ws.gates.data();
    REQUIRE(ws.gates.data() == buffer);  // reused, not reallocated
    REQUIRE(max_abs_diff(s.h, time_slice(h_all, t, B, T)) < 1e-12);
  }
  REQUIRE(max_abs_diff(s.h, sT.h) < 1e-12);
}

TEST_CASE("GRU: two chunks with the state carried equal one call, forward and backward", "[gru]") {
  const Index D = 3, H = 4, B = 2, T = 3;
  Rng rng(66);
  Layer full("gru", D, H, rng);
  Layer chunked = full;
  Mat<double> x = random_mat(D, B * 2 * T, 14), dh = random_mat(H, B * 2 * T, 15);
  const Layer::State s0{random_mat(H, B, 16)}, dsT{random_mat(H, B, 17)};

  Mat<double> h_full, dx_full;
  Layer::State sT_full, ds0_full;
  Layer::Cache cache_full;
  full.forward(x, B, 2 * T, s0, h_full, sT_full, cache_full);
  zero_grad(full);
  full.backward(x, B, 2 * T, s0, dh, dsT, cache_full, dx_full, ds0_full);

  const Mat<double> x1 = chunk(x, B, 2 * T, 0, T), x2 = chunk(x, B, 2 * T, T, T);
  Mat<double> h1, h2, dx1, dx2;
  Layer::State s = s0, s1;
  Layer::Cache cache1, cache2;
  chunked.forward(x1, B, T, s, h1, s, cache1);  // sT aliases s0
  s1 = s;
  chunked.forward(x2, B, T, s1, h2, s, cache2);
  REQUIRE(max_abs_diff(h1, chunk(h_full, B, 2 * T, 0, T)) < 1e-14);
  REQUIRE(max_abs_diff(h2, chunk(h_full, B, 2 * T, T, T)) < 1e-14);
  REQUIRE(max_abs_diff(s.h, sT_full.h) < 1e-14);

  zero_grad(chunked);
  Layer::State ds = dsT;
  chunked.backward(x2, B, T, s1, chunk(dh, B, 2 * T, T, T), ds, cache2, dx2, ds);  // ds0 aliases dsT
  chunked.backward(x1, B, T, s0, chunk(dh, B, 2 * T, 0, T), ds, cache1, dx1, ds);
  REQUIRE(max_abs_diff(dx1, chunk(dx_full, B, 2 * T, 0, T)) < 1e-12);
  REQUIRE(max_abs_diff(dx2, chunk(dx_full, B, 2 * T, T, T)) < 1e-12);
  REQUIRE(max_abs_diff(ds.h, ds0_full.h) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.weight_ih.grad, full.cell.weight_ih.grad) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.weight_hh.grad, full.cell.weight_hh.grad) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.bias_ih.grad, full.cell.bias_ih.grad) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.bias_hh.grad, full.cell.bias_hh.grad) < 1e-12);
}

TEST_CASE("GRU: the sequences shared out among 1, 2 and 3 threads give the same results", "[gru][threads]") {
  const Index D = 8, H = 96, B = 11, T = 5;  // 3H·H·B multiply-adds per step: enough to split
  Rng rng(72);
  const Layer layer("gru", D, H, rng);
  const Mat<double> h_all = seqgen_test::check_thread_shares(layer, B, T, 1e-13);
  Mat<double> h = seqgen_test::random_mat(H, B, 43);  // the helper's x and s0
  REQUIRE(max_abs_diff(h_all, reference_gru(layer.cell, seqgen_test::random_mat(D, B * T, 41), B, T, h)) < 1e-12);
  Rng rng_f(72);
  seqgen_test::check_thread_shares(GruLayer<float>("gru", D, H, rng_f), B, T, 1e-5);
}

TEST_CASE("GRU: float and double agree", "[gru]") {
  const Index D = 6, H = 16, B = 3, T = 10;
  Rng rng_d(67), rng_f(67);
  Layer layer_d("gru", D, H, rng_d);
  GruLayer<float> layer_f("gru", D, H, rng_f);  // the same draws, rounded to float
  const Mat<double> x = random_mat(D, B * T, 18), dh = random_mat(H, B * T, 19);
  Mat<double> h_d, dx_d;
  Mat<float> h_f, dx_f;
  Layer::State s_d = layer_d.zero_state(B), sT_d, ds0_d;
  GruLayer<float>::State s_f = layer_f.zero_state(B), sT_f, ds0_f;
  Layer::Cache cache_d;
  GruLayer<float>::Cache cache_f;
  layer_d.forward(x, B, T, s_d, h_d, sT_d, cache_d);
  layer_f.forward(x.cast<float>(), B, T, s_f, h_f, sT_f, cache_f);
  REQUIRE(max_abs_diff(h_f.cast<double>(), h_d) < 1e-5);

  zero_grad(layer_d);
  zero_grad(layer_f);
  layer_d.backward(x, B, T, s_d, dh, Layer::State{}, cache_d, dx_d, ds0_d);
  layer_f.backward(x.cast<float>(), B, T, s_f, dh.cast<float>(), GruLayer<float>::State{}, cache_f, dx_f, ds0_f);
  REQUIRE(max_abs_diff(dx_f.cast<double>(), dx_d) < 1e-4);
  REQUIRE(max_abs_diff(layer_f.cell.weight_hh.grad.cast<double>(), layer_d.cell.weight_hh.grad) < 1e-4);
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

TEST_CASE("GRU: backward adds into gradients and a reused cache keeps its buffers", "[gru]") {
  const Index D = 3, H = 4, B = 2, T = 3;
  Rng rng(69);
  Layer layer("gru", D, H, rng);
  const Mat<double> x = random_mat(D, B * T, 20), dh = random_mat(H, B * T, 21);
  const Layer::State s0 = layer.zero_state(B);
  Mat<double> h_all, dx;
  Layer::State sT, ds0;
  Layer::Cache cache;
  zero_grad(layer);
  layer.forward(x, B, T, s0, h_all, sT, cache);
  layer.backward(x, B, T, s0, dh, Layer::State{}, cache, dx, ds0);
  const Mat<double> once = layer.cell.weight_hh.grad, bias_once = layer.cell.bias_hh.grad;
  const double* buffers[] = {cache.gates.data(), cache.hn.data(), cache.dgi.data(), cache.dgh.data(), h_all.data(),
                             dx.data()};
  layer.forward(x, B, T, s0, h_all, sT, cache);
  layer.backward(x, B, T, s0, dh, Layer::State{}, cache, dx, ds0);
  REQUIRE(max_abs_diff(layer.cell.weight_hh.grad, 2 * once) < 1e-14);
  REQUIRE(max_abs_diff(layer.cell.bias_hh.grad, 2 * bias_once) < 1e-14);
  const double* again[] = {cache.gates.data(), cache.hn.data(), cache.dgi.data(), cache.dgh.data(), h_all.data(),
                           dx.data()};
  for (int k = 0; k < 6; ++k) REQUIRE(again[k] == buffers[k]);
}

TEST_CASE("GRU: wrong shapes and sizes are clear errors", "[gru][errors]") {
  Rng rng(70);
  GruLayer<float> layer("dec", 4, 3, rng);
  const Index B = 2, T = 5;
  Mat<float> x = Mat<float>::Zero(4, B * T), h_all, dx, dh(3, B * T);
  GruLayer<float>::State s0 = layer.zero_state(B), sT, ds0;
  GruLayer<float>::Cache cache;
  GruLayer<float>::StepWorkspace ws;

  SEQGEN_THROWS_WITH(GruLayer<float>("dec", 0, 0, rng), ConfigError,
                     "GRU 'dec': sizes must be positive, got input_size=0 hidden_size=0");
  SEQGEN_THROWS_WITH(layer.forward(Mat<float>(3, B * T), B, T, s0, h_all, sT, cache), ShapeError,
                     "GRU 'dec': input has 3 rows, expected 4 (input_size)");
  SEQGEN_THROWS_WITH(layer.forward(x, B, 6, s0, h_all, sT, cache), ShapeError,
                     "GRU 'dec': input has 10 columns, expected B*T = 12 (B=2, T=6)");
  SEQGEN_THROWS_WITH(layer.forward(x, 0, T, s0, h_all, sT, cache), ShapeError,
                     "GRU 'dec': B and T must be positive, got B=0, T=5");
  SEQGEN_THROWS_WITH(layer.forward(x, B, T, GruLayer<float>::State{}, h_all, sT, cache), ShapeError,
                     "GRU 'dec': s0.h is (0, 0), expected (3, 2) = (hidden_size, B)");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, GruLayer<float>::State{}, cache, dx, ds0), ShapeError,
                     "GRU 'dec': backward called with B=2, T=5 but the cache holds a forward with B=0, T=0");
  layer.forward(x, B, T, s0, h_all, sT, cache);
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, Mat<float>(3, 11), GruLayer<float>::State{}, cache, dx, ds0),
                     ShapeError, "GRU 'dec': dh_all is (3, 11), expected (3, 10)");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, GruLayer<float>::State{Mat<float>(2, 3)}, cache, dx, ds0),
                     ShapeError, "GRU 'dec': dsT.h is (2, 3), expected (3, 2) = (hidden_size, B) or empty");
  SEQGEN_THROWS_WITH(layer.backward(Mat<float>(4, 10), 10, 1, layer.zero_state(10), Mat<float>(3, 10),
                                    GruLayer<float>::State{}, cache, dx, ds0),
                     ShapeError,
                     "GRU 'dec': backward called with B=10, T=1 but the cache holds a forward with B=2, T=5");
  SEQGEN_THROWS_WITH(layer.step(Mat<float>(5, B), s0, ws), ShapeError,
                     "GRU 'dec': input has 5 rows, expected 4 (input_size)");
  SEQGEN_THROWS_WITH(layer.step(Mat<float>(4, 4), s0, ws), ShapeError,
                     "GRU 'dec': state h is (3, 2), expected (3, 4) = (hidden_size, B)");
}

}  // namespace test_gru
