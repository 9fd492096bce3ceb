#include <seqgen/layers/gelu.hpp>

#include <cmath>

#include "test_util.hpp"

namespace test_mlp {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEST_CASE("GELU: values against the tanh formula evaluated by hand", "[gelu]") {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), evaluated independently in Python.
  const std::pair<double, double> cases[] = {{0.0, 0.0},
                                             {1.0, 0.8411919906082768},
                                             {-1.0, -0.15880800939172324},
                                             {2.0, 1.954597694087775},
                                             {0.5, 0.34571400982514394},
                                             {-3.0, -0.0036373920817729943},
                                             {3.0, 2.996362607918227}};
  Mat<double> x(1, 7), y;
  for (int i = 0; i < 7; ++i) x(0, i) = cases[i].first;
  Gelu<double>().forward(x, y);
  for (int i = 0; i < 7; ++i) {
    INFO("x = " << cases[i].first);
    REQUIRE(gelu(cases[i].first) == Approx(cases[i].second).epsilon(1e-14).margin(1e-300));
    REQUIRE(y(0, i) == Approx(cases[i].second).epsilon(1e-14).margin(1e-300));
  }
  REQUIRE(gelu(0.0) == 0.0);
  REQUIRE(y(0, 0) == 0.0);
}

TEMPLATE_TEST_CASE("GELU: finite for large |x|, gelu(x) = x and 0 at the ends, gradient 1 and 0", "[gelu]", float,
                   double) {
  using S = TestType;
  Mat<S> x(1, 6), y, dx;
  x << S(1e4), S(-1e4), S(1e2), S(-1e2), S(3e19), S(-3e19);
  const Mat<S> ones = Mat<S>::Ones(1, 6);
  Gelu<S>().forward(x, y);
  Gelu<S>().backward(x, ones, dx);
  REQUIRE(y.allFinite());
  REQUIRE(dx.allFinite());
  for (int i = 0; i < 6; i += 2) {
    REQUIRE(y(0, i) == x(0, i));
    REQUIRE(y(0, i + 1) == S(0));
    REQUIRE(dx(0, i) == S(1));
    REQUIRE(dx(0, i + 1) == S(0));
    REQUIRE(gelu(x(0, i)) == x(0, i));
    REQUIRE(gelu(x(0, i + 1)) == S(0));
    REQUIRE(gelu_derivative(x(0, i)) == S(1));
    REQUIRE(gelu_derivative(x(0, i + 1)) == S(0));
  }
}

TEST_CASE("GELU: backward against finite differences, scalar derivative agrees", "[gelu][gradcheck]") {
  // Points spread over the curved region, including near 0 and both tails.
  Mat<double> x = random_mat(5, 7, 11, 4.0), R = random_mat(5, 7, 12), y, dx;
  x(0, 0) = 0.0;
  x(1, 0) = 9.5;
  x(2, 0) = -9.5;
  Gelu<double> g;
  g.backward(x, R, dx);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) REQUIRE(dx(i, j) == Approx(R(i, j) * gelu_derivative(x(i, j))).epsilon(1e-12));
  GradCheck check;
  check.add("x", x, dx);
  seqgen_test::require_grad_ok(check.run([&] {
    g.forward(x, y);
    return (y.array() * R.array()).sum();
  }));
}

TEST_CASE("GELU: backward on long columns (processed in chunks) matches the scalar derivative", "[gelu]") {
  Mat<double> x = random_mat(600, 3, 15, 6.0), dy = random_mat(600, 3, 16), dx;
  Gelu<double>().backward(x, dy, dx);
  Mat<double> expected(600, 3);
  for (Index j = 0; j < x.cols(); ++j)
    for (Index i = 0; i < x.rows(); ++i) expected(i, j) = dy(i, j) * gelu_derivative(x(i, j));
  REQUIRE((dx - expected).cwiseAbs().maxCoeff() < 1e-13);
}

TEST_CASE("GELU: float and double agree, backward may run in place", "[gelu]") {
  Mat<double> x = random_mat(8, 9, 13, 5.0), dy = random_mat(8, 9, 14), y, dx;
  Mat<float> xf = x.cast<float>(), yf, dxf = dy.cast<float>();
  Gelu<double>().forward(x, y);
  Gelu<float>().forward(xf, yf);
  REQUIRE((yf.cast<double>() - y).cwiseAbs().maxCoeff() < 1e-5);
  Gelu<double>().backward(x, dy, dx);
  Gelu<float>().backward(xf, dxf, dxf);  // dx aliasing dy
  REQUIRE((dxf.cast<double>() - dx).cwiseAbs().maxCoeff() < 1e-5);
  SEQGEN_THROWS_WITH(Gelu<double>().backward(x, Mat<double>(8, 8), dx), ShapeError,
                     "GELU: dy is (8, 8), expected (8, 9)");
}

TEST_CASE("Mlp: names, shapes and forward against an explicit computation", "[mlp]") {
  Rng rng(3);
  Mlp<double> mlp("blocks.0.mlp", 3, rng);
  REQUIRE(mlp.fc.weight.name == "blocks.0.mlp.fc.weight");
  REQUIRE(mlp.fc.bias.name == "blocks.0.mlp.fc.bias");
  REQUIRE(mlp.proj.weight.name == "blocks.0.mlp.proj.weight");
  REQUIRE(mlp.proj.bias.name == "blocks.0.mlp.proj.bias");
  REQUIRE(mlp.fc.weight.value.rows() == 12);
  REQUIRE(mlp.fc.weight.value.cols() == 3);
  REQUIRE(count_params(mlp) == 12 * 3 + 12 + 3 * 12 + 3);

  Mat<double> x = random_mat(3, 4, 4), y;
  Mlp<double>::Cache cache;
  mlp.forward(x, y, cache);
  REQUIRE(y.rows() == 3);
  REQUIRE(y.cols() == 4);
  const Mat<double>&W1 = mlp.fc.weight.value, &b1 = mlp.fc.bias.value, &W2 = mlp.proj.weight.value,
  &b2 = mlp.proj.bias.value;
  const double k = std::sqrt(2.0 / 3.141592653589793);
  for (Index n = 0; n < 4; ++n) {
    double a[12];
    for (Index r = 0; r < 12; ++r) {
      double h = b1(r, 0);
      for (Index c = 0; c < 3; ++c) h += W1(r, c) * x(c, n);
      a[r] = 0.5 * h * (1 + std::tanh(k * (h + 0.044715 * h * h * h)));
    }
    for (Index o = 0; o < 3; ++o) {
      double expected = b2(o, 0);
      for (Index r = 0; r < 12; ++r) expected += W2(o, r) * a[r];
      REQUIRE(y(o, n) == Approx(expected).epsilon(1e-12));
    }
  }
}

TEST_CASE("Mlp: gradient check, N = 1 and C = 1", "[mlp][gradcheck]") {
  for (auto [C, N] : {std::pair<Index, Index>{4, 6}, {3, 1}, {1, 3}}) {
    INFO("C = " << C << ", N = " << N);
    Rng rng(5);
    Mlp<double> mlp("mlp", C, rng);
    Mat<double> x = random_mat(C, N, 6, 2.0), R = random_mat(C, N, 7), y, dx;
    Mlp<double>::Cache cache;
    mlp.forward(x, y, cache);
    zero_grad(mlp);
    mlp.backward(x, R, cache, dx);

    GradCheck check;
    check.add("x", x, dx);
    check.add_params(mlp);
    seqgen_test::require_grad_ok(check.run([&] {
      mlp.forward(x, y, cache);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("Mlp: backward adds into gradients, a reused cache gives the same results", "[mlp]") {
  Rng rng(8);
  Mlp<double> mlp("mlp", 4, rng);
  Mat<double> x = random_mat(4, 5, 9), dy = random_mat(4, 5, 10), y, dx1, dx2;
  Mlp<double>::Cache cache;
  mlp.forward(x, y, cache);
  zero_grad(mlp);
  mlp.backward(x, dy, cache, dx1);
  const Mat<double> once = mlp.fc.weight.grad;
  const double* h_data = cache.h.data();
  mlp.forward(x, y, cache);
  mlp.backward(x, dy, cache, dx2);
  REQUIRE(cache.h.data() == h_data);
  REQUIRE((mlp.fc.weight.grad - 2 * once).norm() < 1e-12);
  REQUIRE(dx1 == dx2);
}

TEST_CASE("Mlp: backward computes GELU(h) again, so another cache may take the scratch", "[mlp]") {
  Rng rng(11);
  Mlp<double> mlp("mlp", 4, rng);
  Mat<double> x = random_mat(4, 5, 12), dy = random_mat(4, 5, 13), y, dx1, dx2;
  Mlp<double>::Cache cache, other;
  mlp.forward(x, y, cache);
  zero_grad(mlp);
  mlp.backward(x, dy, cache, dx1);
  const Mat<double> once = mlp.proj.weight.grad;
  mlp.forward(x, y, cache);
  other.take_scratch(cache);  // cache.a is now empty
  REQUIRE(cache.a.size() == 0);
  zero_grad(mlp);
  mlp.backward(x, dy, cache, dx2);
  REQUIRE(mlp.proj.weight.grad == once);
  REQUIRE(dx1 == dx2);
}

TEST_CASE("Mlp: clear errors for bad sizes and shapes", "[mlp][errors]") {
  Rng rng(1);
  SEQGEN_THROWS_WITH(Mlp<float>("mlp", 0, rng), ConfigError, "Mlp 'mlp': C must be positive, got C=0");
  Mlp<float> mlp("h.0.mlp", 4, rng);
  Mlp<float>::Cache cache;
  Mat<float> x = Mat<float>::Zero(3, 2), y, dx;
  SEQGEN_THROWS_WITH(mlp.forward(x, y, cache), ShapeError, "Mlp 'h.0.mlp': input has 3 rows, expected 4 (C)");
  Mat<float> x4 = Mat<float>::Zero(4, 2);
  mlp.forward(x4, y, cache);
  SEQGEN_THROWS_WITH(mlp.backward(x4, Mat<float>::Zero(4, 3), cache, dx), ShapeError,
                     "Mlp 'h.0.mlp': dy is (4, 3), expected (4, 2)");
  Mat<float> x5 = Mat<float>::Zero(4, 5);
  SEQGEN_THROWS_WITH(mlp.backward(x5, Mat<float>::Zero(4, 5), cache, dx), ShapeError,
                     "Mlp 'h.0.mlp': cache holds 2 columns, expected 5");
}

}  // namespace test_mlp
