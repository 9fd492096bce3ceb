#include <seqgen/layers/linear.hpp>

#include "test_util.hpp"

namespace test_linear {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEST_CASE("Linear: gradient check with and without bias, N = 1 and non-square", "[linear][gradcheck]") {
  for (bool with_bias : {true, false}) {
    for (auto [in, out, N] : {std::tuple<Index, Index, Index>{5, 3, 4}, {3, 7, 1}, {1, 1, 2}}) {
      Rng rng(1);
      Linear<double> layer("fc", in, out, rng, with_bias);
      Mat<double> x = random_mat(in, N, 2), R = random_mat(out, N, 3), y, dx;
      layer.forward(x, y);
      zero_grad(layer);
      layer.backward(x, R, &dx);

      GradCheck check;
      check.add("x", x, dx);
      check.add_params(layer);
      seqgen_test::require_grad_ok(check.run([&] {
        layer.forward(x, y);
        return (y.array() * R.array()).sum();
      }));
    }
  }
}

TEST_CASE("Linear: forward matches the explicit sum and names follow PyTorch", "[linear]") {
  Rng rng(4);
  Linear<double> layer("blocks.0.mlp.fc", 3, 2, rng);
  REQUIRE(layer.weight.name == "blocks.0.mlp.fc.weight");
  REQUIRE(layer.bias.name == "blocks.0.mlp.fc.bias");
  Mat<double> x = random_mat(3, 2, 5), y;
  layer.forward(x, y);
  for (Index n = 0; n < 2; ++n)
    for (Index o = 0; o < 2; ++o) {
      double expected = layer.bias.value(o, 0);
      for (Index i = 0; i < 3; ++i) expected += layer.weight.value(o, i) * x(i, n);
      REQUIRE(y(o, n) == Approx(expected).epsilon(1e-14));
    }
}

TEST_CASE("Linear: backward adds into parameter gradients", "[linear]") {
  Rng rng(6);
  Linear<double> layer("fc", 3, 2, rng);
  Mat<double> x = random_mat(3, 4, 7), dy = random_mat(2, 4, 8);
  zero_grad(layer);
  layer.backward(x, dy, nullptr);
  const Mat<double> once = layer.weight.grad;
  layer.backward(x, dy, nullptr);
  REQUIRE((layer.weight.grad - 2 * once).norm() < 1e-12);
}

TEST_CASE("Linear: wrong input shape and bad sizes are clear errors", "[linear][errors]") {
  Rng rng(9);
  Linear<float> layer("head", 4, 2, rng);
  Mat<float> x(3, 5), y;
  SEQGEN_THROWS_WITH(layer.forward(x, y), ShapeError, "Linear 'head': input has 3 rows, expected 4");
  SEQGEN_THROWS_WITH(Linear<float>("fc", 0, 2, rng), ConfigError, "sizes must be positive");
}

}  // namespace test_linear
