// The checker itself: it must pass a right gradient and catch a wrong one.
#include <seqgen/layers/linear.hpp>

#include "test_util.hpp"

namespace test_gradcheck {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEST_CASE("GradCheck: a closed-form gradient passes", "[gradcheck]") {
  // L = Σ sin(x) ⊙ x  ->  dL/dx = cos(x) ⊙ x + sin(x)
  Mat<double> x = random_mat(3, 4, 1);
  Mat<double> dx = (x.array().cos() * x.array() + x.array().sin()).matrix();
  GradCheck check;
  check.add("x", x, dx);
  auto result = check.run([&] { return (x.array().sin() * x.array()).sum(); });
  INFO(result.message());
  REQUIRE(result.ok);
  REQUIRE(result.checked == 12);
}

TEST_CASE("GradCheck: a backward scaled by 1.01 is caught and reported", "[gradcheck]") {
  Rng rng(2);
  Linear<double> layer("fc", 4, 3, rng);
  Mat<double> x = random_mat(4, 5, 3), R = random_mat(3, 5, 4), y, dx;
  layer.forward(x, y);
  zero_grad(layer);
  layer.backward(x, R, &dx);
  layer.weight.grad *= 1.01;  // the deliberate bug

  GradCheck check;
  check.add("x", x, dx);
  check.add_params(layer);
  auto result = check.run([&] {
    layer.forward(x, y);
    return (y.array() * R.array()).sum();
  });
  REQUIRE_FALSE(result.ok);
  REQUIRE(result.tensor == "fc.weight");
  REQUIRE(result.rel_err == Approx(0.01).epsilon(0.01));
  REQUIRE(result.message().find("FAILED") != std::string::npos);
}

TEST_CASE("GradCheck: the perturbed tensor is restored", "[gradcheck]") {
  Mat<double> x = random_mat(2, 2, 5);
  const Mat<double> before = x;
  Mat<double> dx = 2 * x;
  GradCheck check;
  check.add("x", x, dx);
  check.run([&] { return x.squaredNorm(); });
  REQUIRE(x == before);
}

TEST_CASE("GradCheck: mismatched gradient shape is an error", "[gradcheck][errors]") {
  Mat<double> x(2, 3), g(3, 2);
  GradCheck check;
  SEQGEN_THROWS_WITH(check.add("x", x, g), ShapeError, "tensor 'x' is (2, 3) but its gradient is (3, 2)");
}

}  // namespace test_gradcheck
