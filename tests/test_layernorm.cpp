#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/layernorm.hpp>

#include <utility>

#include "test_util.hpp"

namespace test_layernorm {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// A LayerNorm with a random gain and bias, so that the gradient check exercises both.
LayerNorm<double> random_layernorm(Index C, std::uint64_t seed) {
  LayerNorm<double> ln("ln", C);
  ln.weight.value = random_mat(C, 1, seed, 2.0);
  ln.bias.value = random_mat(C, 1, seed + 1);
  return ln;
}

}  // namespace

TEST_CASE("LayerNorm: gradient check, N = 1, C = 1 and non-square", "[layernorm][gradcheck]") {
  for (auto [C, N] : {std::pair<Index, Index>{5, 4}, {3, 1}, {8, 3}, {1, 3}, {2, 6}}) {
    LayerNorm<double> ln = random_layernorm(C, 1);
    // An offset and unequal scales per column, so that mean and rstd differ across tokens.
    Mat<double> x = random_mat(C, N, 3, 2.0).array() + 0.5;
    Mat<double> R = random_mat(C, N, 4), y, dx;
    LayerNorm<double>::Cache cache;
    ln.forward(x, y, cache);
    zero_grad(ln);
    ln.backward(x, R, cache, dx);

    GradCheck check;
    check.add("x", x, dx);
    check.add_params(ln);
    seqgen_test::require_grad_ok(check.run([&] {
      ln.forward(x, y, cache);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("LayerNorm: names, initialisation and the explicit formula", "[layernorm]") {
  LayerNorm<double> plain("blocks.0.ln_1", 4);
  REQUIRE(plain.weight.name == "blocks.0.ln_1.weight");
  REQUIRE(plain.bias.name == "blocks.0.ln_1.bias");
  REQUIRE(plain.weight.value == Mat<double>::Ones(4, 1));
  REQUIRE(plain.bias.value == Mat<double>::Zero(4, 1));
  REQUIRE_FALSE(plain.weight.decay);
  REQUIRE_FALSE(plain.bias.decay);

  const Index C = 6, N = 5;
  LayerNorm<double> ln = random_layernorm(C, 2);
  Mat<double> x = random_mat(C, N, 3, 3.0), y;
  LayerNorm<double>::Cache cache;
  ln.forward(x, y, cache);
  for (Index n = 0; n < N; ++n) {
    double mu = 0, var = 0;
    for (Index c = 0; c < C; ++c) mu += x(c, n) / C;
    for (Index c = 0; c < C; ++c) var += (x(c, n) - mu) * (x(c, n) - mu) / C;  // biased, as PyTorch
    const double rstd = 1 / std::sqrt(var + 1e-5);
    REQUIRE(cache.mean(n) == Approx(mu).epsilon(1e-13));
    REQUIRE(cache.rstd(n) == Approx(rstd).epsilon(1e-13));
    for (Index c = 0; c < C; ++c)
      REQUIRE(y(c, n) == Approx(ln.weight.value(c, 0) * (x(c, n) - mu) * rstd + ln.bias.value(c, 0)).epsilon(1e-13));
  }

  // The inference overload gives the same output without a cache.
  Mat<double> y2;
  ln.forward(x, y2);
  REQUIRE(y2 == y);
}

TEST_CASE("LayerNorm: before gain and bias each column has zero mean and unit variance", "[layernorm]") {
  const Index C = 32, N = 7;
  LayerNorm<double> ln = random_layernorm(C, 5);
  Mat<double> x = random_mat(C, N, 6, 4.0).array() - 3.0, y;
  LayerNorm<double>::Cache cache;
  ln.forward(x, y, cache);
  // Undo the affine part: x̂ = (y − b) / g.
  Mat<double> xhat = (y.colwise() - ln.bias.value.col(0)).array().colwise() / ln.weight.value.col(0).array();
  for (Index n = 0; n < N; ++n) {
    const double mean = xhat.col(n).mean();
    const double var = xhat.col(n).squaredNorm() / C;
    const double raw_var = (x.col(n).array() - x.col(n).mean()).square().mean();
    REQUIRE(std::abs(mean) < 1e-12);
    // exactly σ² / (σ² + eps), i.e. 1 up to the eps in the denominator
    REQUIRE(var == Approx(raw_var / (raw_var + 1e-5)).epsilon(1e-12));
    REQUIRE(var == Approx(1.0).epsilon(1e-4));
  }
}

TEST_CASE("LayerNorm: backward adds into parameter gradients and assigns dx", "[layernorm]") {
  LayerNorm<double> ln = random_layernorm(4, 7);
  Mat<double> x = random_mat(4, 3, 8), dy = random_mat(4, 3, 9), y;
  Mat<double> dx = Mat<double>::Constant(4, 3, 100.0);
  LayerNorm<double>::Cache cache;
  ln.forward(x, y, cache);
  zero_grad(ln);
  ln.backward(x, dy, cache, dx);
  const Mat<double> dw = ln.weight.grad, db = ln.bias.grad, dx1 = dx;
  ln.backward(x, dy, cache, dx);
  REQUIRE((ln.weight.grad - 2 * dw).norm() < 1e-13);
  REQUIRE((ln.bias.grad - 2 * db).norm() < 1e-13);
  REQUIRE(dx == dx1);  // assigned, not accumulated
  // db is Σ_n dy, independent of x
  REQUIRE((db - dy.rowwise().sum()).norm() < 1e-13);
  // dx of each column is orthogonal to the ones vector: shifting x leaves y unchanged
  REQUIRE(std::abs(dx.col(0).sum()) < 1e-12);
}

TEST_CASE("LayerNorm: backward may write dx over dy", "[layernorm]") {
  // In place (dx the same matrix as dy), as a caller short of buffers would do; column counts
  // below and above the threading threshold, C = 70 for two full blocks of 32 rows and a part.
  for (auto [C, N] : {std::pair<Index, Index>{16, 1}, {16, 5}, {16, 3000}, {70, 7}, {70, 600}}) {
    INFO("C=" << C << " N=" << N);
    LayerNorm<double> ln = random_layernorm(C, 20);
    const Mat<double> x = random_mat(C, N, 21, 3.0), dy = random_mat(C, N, 22);
    Mat<double> y, dx;
    LayerNorm<double>::Cache cache;
    ln.forward(x, y, cache);
    zero_grad(ln);
    ln.backward(x, dy, cache, dx);
    const Mat<double> dw = ln.weight.grad, db = ln.bias.grad;

    Mat<double> inout = dy;
    zero_grad(ln);
    ln.backward(x, inout, cache, inout);
    REQUIRE(inout == dx);
    REQUIRE(ln.weight.grad == dw);
    REQUIRE(ln.bias.grad == db);
  }
}

TEST_CASE("LayerNorm: constant columns and inputs of ±1e4 stay finite", "[layernorm]") {
  const Index C = 16;
  Mat<double> xd(C, 4);
  xd.col(0).setConstant(3.0);                                      // constant
  xd.col(1).setConstant(-1e4);                                     // constant and large
  xd.col(2) = random_mat(C, 1, 10).array().sign() * 1e4;           // ±1e4
  xd.col(3) = random_mat(C, 1, 11).array() + 1e4;                  // 1e4 + U(-1, 1): the cancellation case
  xd = xd.cast<float>().cast<double>().eval();  // the same inputs for both precisions
  const Mat<double> dyd = random_mat(C, 4, 12);

  LayerNorm<double> lnd = random_layernorm(C, 13);
  LayerNorm<float> lnf("ln", C);
  lnf.weight.value = lnd.weight.value.cast<float>();
  lnf.bias.value = lnd.bias.value.cast<float>();

  Mat<double> yd, dxd;
  LayerNorm<double>::Cache cd;
  lnd.forward(xd, yd, cd);
  lnd.backward(xd, dyd, cd, dxd);
  Mat<float> yf, dxf;
  LayerNorm<float>::Cache cf;
  const Mat<float> xf = xd.cast<float>();
  lnf.forward(xf, yf, cf);
  lnf.backward(xf, dyd.cast<float>(), cf, dxf);

  REQUIRE(yd.allFinite());
  REQUIRE(dxd.allFinite());
  REQUIRE(yf.allFinite());
  REQUIRE(dxf.allFinite());
  REQUIRE(lnf.weight.grad.allFinite());
  // A constant column normalises to 0: y = b, and its x̂ is 0 so dx = rstd·(g⊙dy − mean(g⊙dy)).
  REQUIRE((yd.col(0) - lnd.bias.value).norm() < 1e-12);
  REQUIRE((yf.col(1) - lnf.bias.value).norm() < 1e-6f);
  // ±1e4 normalises to about ±1 (σ = 1e4 dwarfs eps).
  REQUIRE((((yd.col(2) - lnd.bias.value).array() / lnd.weight.value.array()).abs() - 1).abs().maxCoeff() < 1e-3);
  // Float agrees with double even at an offset of 1e4, where E[x²] − μ² would lose every digit
  // (float's spacing at 1e8 is 8, far above σ² ≈ 1/3). What remains is the float rounding of
  // Σx ≈ 1.6e5 in the mean, about 1e-3 of σ.
  REQUIRE((yf.col(3).cast<double>() - yd.col(3)).cwiseAbs().maxCoeff() < 5e-3);
}

TEST_CASE("LayerNorm: results do not depend on the thread count", "[layernorm]") {
  const Index C = 24, N = 50;
  LayerNorm<double> ln = random_layernorm(C, 14);
  Mat<double> x = random_mat(C, N, 15), dy = random_mat(C, N, 16), y1, y2, dx1, dx2;
  LayerNorm<double>::Cache cache;
  const int saved = num_threads();

  set_num_threads(1);
  ln.forward(x, y1, cache);
  zero_grad(ln);
  ln.backward(x, dy, cache, dx1);
  const Mat<double> dw1 = ln.weight.grad;

  set_num_threads(4);
  ln.forward(x, y2, cache);
  zero_grad(ln);
  ln.backward(x, dy, cache, dx2);
  set_num_threads(saved);

  REQUIRE(y1 == y2);
  REQUIRE(dx1 == dx2);
  REQUIRE(dw1 == ln.weight.grad);
}

TEST_CASE("LayerNorm: forward_again gives forward's output bit for bit", "[layernorm]") {
  // The transformer block keeps the statistics, not the output, and computes it again in backward.
  for (auto [C, N] : {std::pair<Index, Index>{1, 1}, {16, 5}, {70, 3000}}) {
    INFO("C=" << C << " N=" << N);
    LayerNorm<float> ln("ln", C);
    ln.weight.value = random_mat(C, 1, 30, 2.0).cast<float>();
    ln.bias.value = random_mat(C, 1, 31).cast<float>();
    const Mat<float> x = (random_mat(C, N, 32, 3.0).array() + 5.0).matrix().cast<float>();
    Mat<float> y, again;
    LayerNorm<float>::Cache cache;
    ln.forward(x, y, cache);
    ln.forward_again(x, cache, again);
    REQUIRE(again == y);
  }
  LayerNorm<float> ln("ln_f", 4);
  Mat<float> x = Mat<float>::Ones(4, 2), y;
  LayerNorm<float>::Cache cache;
  ln.forward(x, y, cache);
  SEQGEN_THROWS_WITH(ln.forward_again(Mat<float>::Ones(4, 3), cache, y), ShapeError,
                     "LayerNorm 'ln_f': cache holds 2 columns, expected 3");
}

TEST_CASE("LayerNorm: bad shapes and sizes are clear errors", "[layernorm][errors]") {
  LayerNorm<float> ln("ln_f", 4);
  Mat<float> x = Mat<float>::Ones(3, 2), y, dx;
  LayerNorm<float>::Cache cache;
  SEQGEN_THROWS_WITH(ln.forward(x, y, cache), ShapeError, "LayerNorm 'ln_f': input has 3 rows, expected 4");
  SEQGEN_THROWS_WITH(ln.forward(x, y), ShapeError, "LayerNorm 'ln_f': input has 3 rows, expected 4");

  Mat<float> good = Mat<float>::Ones(4, 2);
  ln.forward(good, y, cache);
  SEQGEN_THROWS_WITH(ln.backward(good, Mat<float>::Ones(4, 3), cache, dx), ShapeError,
                     "LayerNorm 'ln_f': dy is (4, 3), expected (4, 2)");
  Mat<float> wider = Mat<float>::Ones(4, 5);
  SEQGEN_THROWS_WITH(ln.backward(wider, wider, cache, dx), ShapeError,
                     "LayerNorm 'ln_f': cache holds 2 columns, expected 5");
  SEQGEN_THROWS_WITH(LayerNorm<float>("ln", 0), ConfigError, "LayerNorm 'ln': size must be positive, got C=0");
}

}  // namespace test_layernorm
