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

// Steps [t0, t0 + len) of every sequence of a (rows, B*T) matrix, as a (rows, B*len) matrix.
Mat<double> chunk(const Mat<double>& m, Index B, Index T, Index t0, Index len) {
  Mat<double> out(m.rows(), B * len);
  for (Index b = 0; b < B; ++b) out.middleCols(b * len, len) = m.middleCols(b * T + t0, len);
  return out;
}

double max_abs_diff(const Mat<double>& a, const Mat<double>& b) { return (a - b).cwiseAbs().maxCoeff(); }

}  // namespace

TEST_CASE("LSTM: gradient check of parameters, x, s0.h and s0.c, through h_all and the final state",
          "[lstm][gradcheck]") {
  // (D, H, B, T): D != H both ways, B = 1, T = 1. Plain variables, not structured bindings: the loss
  // lambda captures them, which C++17 does not allow for bindings.
  for (const auto& shape :
       {std::tuple<Index, Index, Index, Index>{3, 4, 2, 3}, {5, 2, 1, 4}, {2, 3, 3, 1}, {1, 1, 1, 1}}) {
    Index D, H, B, T;
    std::tie(D, H, B, T) = shape;
    INFO("D=" << D << " H=" << H << " B=" << B << " T=" << T);
    Rng rng(11);
    Layer layer("lstm", D, H, rng);
    Mat<double> x = random_mat(D, B * T, 1), R = random_mat(H, B * T, 2), h_all, dx;
    Layer::State s0{random_mat(H, B, 3), random_mat(H, B, 4)}, sT, ds0;
    const Layer::State R_T{random_mat(H, B, 5), random_mat(H, B, 6)};
    Layer::Cache cache;
    layer.forward(x, B, T, s0, h_all, sT, cache);
    zero_grad(layer);
    layer.backward(x, B, T, s0, R, R_T, cache, dx, ds0);

    GradCheck check;
    check.add("x", x, dx);
    check.add("s0.h", s0.h, ds0.h);
    check.add("s0.c", s0.c, ds0.c);
    check.add_params(layer);
    seqgen_test::require_grad_ok(check.run([&] {
      layer.forward(x, B, T, s0, h_all, sT, cache);
      return (h_all.array() * R.array()).sum() + (sT.h.array() * R_T.h.array()).sum() +
             (sT.c.array() * R_T.c.array()).sum();
    }));
  }
}

TEST_CASE("LSTM: an empty dsT stands for a zero gradient into the final state", "[lstm][gradcheck]") {
  const Index D = 2, H = 3, B = 2, T = 3;
  Rng rng(12);
  Layer layer("lstm", D, H, rng);
  Mat<double> x = random_mat(D, B * T, 7), R = random_mat(H, B * T, 8), h_all, dx;
  Layer::State s0{random_mat(H, B, 9), random_mat(H, B, 10)}, sT, ds0;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  zero_grad(layer);
  layer.backward(x, B, T, s0, R, Layer::State{}, cache, dx, ds0);

  GradCheck check;
  check.add("x", x, dx);
  check.add("s0.h", s0.h, ds0.h);
  check.add("s0.c", s0.c, ds0.c);
  check.add_params(layer);
  seqgen_test::require_grad_ok(check.run([&] {
    layer.forward(x, B, T, s0, h_all, sT, cache);
    return (h_all.array() * R.array()).sum();
  }));
}

TEST_CASE("LSTM: forward matches a scalar implementation of the equations", "[lstm]") {
  const Index D = 3, H = 5, B = 3, T = 4;
  Rng rng(13);
  Layer layer("lstm", D, H, rng);
  // Larger weights than the default so the gates leave their linear range.
  layer.for_each_param([](Param<double>& p) { p.value *= 3.0; });
  Mat<double> x = random_mat(D, B * T, 14), h_all;
  Layer::State s0{random_mat(H, B, 15), random_mat(H, B, 16)}, sT;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  const Reference ref = reference_lstm(layer.cell, x, B, T, s0.h, s0.c);
  REQUIRE(max_abs_diff(h_all, ref.h_all) < 1e-13);
  REQUIRE(max_abs_diff(sT.h, ref.h) < 1e-13);
  REQUIRE(max_abs_diff(sT.c, ref.c) < 1e-13);
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

TEST_CASE("LSTM: step() applied T times equals forward()", "[lstm]") {
  const Index D = 4, H = 3, B = 2, T = 5;
  Rng rng(21);
  Layer layer("lstm", D, H, rng);
  Mat<double> x = random_mat(D, B * T, 22), h_all;
  Layer::State s0{random_mat(H, B, 23), random_mat(H, B, 24)}, sT;
  Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);

  Layer::State s = s0;
  Layer::StepWorkspace ws;
  const double* gates_buffer = nullptr;
  for (Index t = 0; t < T; ++t) {
    const Mat<double> x_t = time_slice(x, t, B, T);
    layer.step(x_t, s, ws);
    if (t == 0) gates_buffer = ws.gates.data();
    REQUIRE(ws.gates.data() == gates_buffer);  // reused, not reallocated
    REQUIRE(max_abs_diff(s.h, time_slice(h_all, t, B, T)) < 1e-12);
  }
  REQUIRE(max_abs_diff(s.h, sT.h) < 1e-12);
  REQUIRE(max_abs_diff(s.c, sT.c) < 1e-12);
}

TEST_CASE("LSTM: two chunks with the state carried equal one call, forward and backward", "[lstm]") {
  const Index D = 3, H = 4, B = 2, T = 3;  // each chunk is T steps, the whole sequence 2T
  Rng rng(25);
  Layer full("lstm", D, H, rng);
  Layer chunked = full;
  Mat<double> x = random_mat(D, B * 2 * T, 26), dh = random_mat(H, B * 2 * T, 27);
  const Layer::State s0{random_mat(H, B, 28), random_mat(H, B, 29)};
  const Layer::State dsT{random_mat(H, B, 30), random_mat(H, B, 31)};

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
  REQUIRE(max_abs_diff(s.c, sT_full.c) < 1e-14);

  zero_grad(chunked);
  Layer::State ds = dsT;
  chunked.backward(x2, B, T, s1, chunk(dh, B, 2 * T, T, T), ds, cache2, dx2, ds);  // ds0 aliases dsT
  chunked.backward(x1, B, T, s0, chunk(dh, B, 2 * T, 0, T), ds, cache1, dx1, ds);
  REQUIRE(max_abs_diff(dx1, chunk(dx_full, B, 2 * T, 0, T)) < 1e-12);
  REQUIRE(max_abs_diff(dx2, chunk(dx_full, B, 2 * T, T, T)) < 1e-12);
  REQUIRE(max_abs_diff(ds.h, ds0_full.h) < 1e-12);
  REQUIRE(max_abs_diff(ds.c, ds0_full.c) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.weight_ih.grad, full.cell.weight_ih.grad) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.weight_hh.grad, full.cell.weight_hh.grad) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.bias_ih.grad, full.cell.bias_ih.grad) < 1e-12);
  REQUIRE(max_abs_diff(chunked.cell.bias_hh.grad, full.cell.bias_hh.grad) < 1e-12);
}

TEST_CASE("LSTM: the sequences shared out among 1, 2 and 3 threads give the same results", "[lstm][threads]") {
  const Index D = 8, H = 96, B = 8, T = 5;  // 4H·H·B multiply-adds per step: enough to split
  Rng rng(71);
  const Layer layer("lstm", D, H, rng);
  const Mat<double> h_all = seqgen_test::check_thread_shares(layer, B, T, 1e-13);
  const Mat<double> x = seqgen_test::random_mat(D, B * T, 41);  // the helper's x and s0
  const Reference ref = reference_lstm(layer.cell, x, B, T, seqgen_test::random_mat(H, B, 43),
                                       seqgen_test::random_mat(H, B, 44));
  REQUIRE(max_abs_diff(h_all, ref.h_all) < 1e-12);
  Rng rng_f(71);
  seqgen_test::check_thread_shares(LstmLayer<float>("lstm", D, H, rng_f), B, T, 1e-5);
}

TEST_CASE("LSTM: float and double agree", "[lstm]") {
  const Index D = 6, H = 16, B = 3, T = 10;
  Rng rng_d(32), rng_f(32);
  Layer layer_d("lstm", D, H, rng_d);
  LstmLayer<float> layer_f("lstm", D, H, rng_f);  // the same draws, rounded to float
  const Mat<double> x = random_mat(D, B * T, 33), dh = random_mat(H, B * T, 34);
  Mat<double> h_d, dx_d;
  Mat<float> h_f, dx_f;
  Layer::State s_d = layer_d.zero_state(B), sT_d, ds0_d;
  LstmLayer<float>::State s_f = layer_f.zero_state(B), sT_f, ds0_f;
  Layer::Cache cache_d;
  LstmLayer<float>::Cache cache_f;
  layer_d.forward(x, B, T, s_d, h_d, sT_d, cache_d);
  layer_f.forward(x.cast<float>(), B, T, s_f, h_f, sT_f, cache_f);
  REQUIRE(max_abs_diff(h_f.cast<double>(), h_d) < 1e-5);
  REQUIRE(max_abs_diff(sT_f.c.cast<double>(), sT_d.c) < 1e-5);

  zero_grad(layer_d);
  zero_grad(layer_f);
  layer_d.backward(x, B, T, s_d, dh, Layer::State{}, cache_d, dx_d, ds0_d);
  layer_f.backward(x.cast<float>(), B, T, s_f, dh.cast<float>(), LstmLayer<float>::State{}, cache_f, dx_f, ds0_f);
  REQUIRE(max_abs_diff(dx_f.cast<double>(), dx_d) < 1e-4);
  REQUIRE(max_abs_diff(layer_f.cell.weight_hh.grad.cast<double>(), layer_d.cell.weight_hh.grad) < 1e-4);
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

TEST_CASE("LSTM: backward adds into gradients and a reused cache keeps its buffers", "[lstm]") {
  const Index D = 3, H = 4, B = 2, T = 3;
  Rng rng(36);
  Layer layer("lstm", D, H, rng);
  const Mat<double> x = random_mat(D, B * T, 37), dh = random_mat(H, B * T, 38);
  const Layer::State s0 = layer.zero_state(B);
  Mat<double> h_all, dx;
  Layer::State sT, ds0;
  Layer::Cache cache;
  zero_grad(layer);
  layer.forward(x, B, T, s0, h_all, sT, cache);
  layer.backward(x, B, T, s0, dh, Layer::State{}, cache, dx, ds0);
  const Mat<double> once = layer.cell.weight_hh.grad, bias_once = layer.cell.bias_ih.grad;
  const double* buffers[] = {cache.gates.data(), cache.h_prev.data(), cache.dgates.data(), h_all.data(), dx.data()};
  layer.forward(x, B, T, s0, h_all, sT, cache);
  layer.backward(x, B, T, s0, dh, Layer::State{}, cache, dx, ds0);
  REQUIRE(max_abs_diff(layer.cell.weight_hh.grad, 2 * once) < 1e-14);
  REQUIRE(max_abs_diff(layer.cell.bias_ih.grad, 2 * bias_once) < 1e-14);
  REQUIRE(max_abs_diff(layer.cell.bias_hh.grad, 2 * bias_once) < 1e-14);
  const double* again[] = {cache.gates.data(), cache.h_prev.data(), cache.dgates.data(), h_all.data(), dx.data()};
  for (int k = 0; k < 5; ++k) REQUIRE(again[k] == buffers[k]);
}

TEST_CASE("LSTM: wrong shapes and sizes are clear errors", "[lstm][errors]") {
  Rng rng(39);
  LstmLayer<float> layer("enc", 4, 3, rng);
  const Index B = 2, T = 5;
  Mat<float> x(4, B * T), h_all, dx, dh(3, B * T);
  LstmLayer<float>::State s0 = layer.zero_state(B), sT, ds0;
  LstmLayer<float>::Cache cache;
  LstmLayer<float>::StepWorkspace ws;

  SEQGEN_THROWS_WITH(LstmLayer<float>("enc", 0, 3, rng), ConfigError,
                     "LSTM 'enc': sizes must be positive, got input_size=0 hidden_size=3");
  SEQGEN_THROWS_WITH(layer.forward(Mat<float>(5, B * T), B, T, s0, h_all, sT, cache), ShapeError,
                     "LSTM 'enc': input has 5 rows, expected 4 (input_size)");
  SEQGEN_THROWS_WITH(layer.forward(x, B, 4, s0, h_all, sT, cache), ShapeError,
                     "LSTM 'enc': input has 10 columns, expected B*T = 8 (B=2, T=4)");
  SEQGEN_THROWS_WITH(layer.forward(x, B, 0, s0, h_all, sT, cache), ShapeError,
                     "LSTM 'enc': B and T must be positive, got B=2, T=0");
  SEQGEN_THROWS_WITH(layer.forward(x, B, T, layer.zero_state(3), h_all, sT, cache), ShapeError,
                     "LSTM 'enc': s0.h is (3, 3), expected (3, 2) = (hidden_size, B)");
  SEQGEN_THROWS_WITH(layer.forward(x, B, T, LstmLayer<float>::State{s0.h, Mat<float>()}, h_all, sT, cache),
                     ShapeError, "LSTM 'enc': s0.c is (0, 0), expected (3, 2)");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, LstmLayer<float>::State{}, cache, dx, ds0), ShapeError,
                     "LSTM 'enc': backward called with B=2, T=5 but the cache holds a forward with B=0, T=0");
  layer.forward(x.setZero(), B, T, s0, h_all, sT, cache);
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, Mat<float>(3, 9), LstmLayer<float>::State{}, cache, dx, ds0),
                     ShapeError, "LSTM 'enc': dh_all is (3, 9), expected (3, 10)");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, LstmLayer<float>::State{Mat<float>(3, 1), Mat<float>()}, cache,
                                    dx, ds0),
                     ShapeError, "LSTM 'enc': dsT.h is (3, 1), expected (3, 2) = (hidden_size, B) or empty");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, LstmLayer<float>::State{Mat<float>(), Mat<float>(2, 2)}, cache,
                                    dx, ds0),
                     ShapeError, "LSTM 'enc': dsT.c is (2, 2), expected (3, 2) = (hidden_size, B) or empty");
  SEQGEN_THROWS_WITH(layer.backward(Mat<float>(4, 10), 5, 2, layer.zero_state(5), dh, LstmLayer<float>::State{},
                                    cache, dx, ds0),
                     ShapeError, "but the cache holds a forward with B=2, T=5");
  SEQGEN_THROWS_WITH(layer.step(Mat<float>(3, B), s0, ws), ShapeError,
                     "LSTM 'enc': input has 3 rows, expected 4 (input_size)");
  SEQGEN_THROWS_WITH(layer.step(Mat<float>(4, 1), s0, ws), ShapeError,
                     "LSTM 'enc': state h is (3, 2), expected (3, 1) = (hidden_size, B)");
}

}  // namespace test_lstm
