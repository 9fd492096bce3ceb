#include <seqgen/layers/dropout.hpp>

#include "test_util.hpp"

namespace test_dropout {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEST_CASE("Dropout: evaluation and p = 0 are the identity and leave the cache alone", "[dropout]") {
  Mat<double> x = random_mat(5, 7, 1), dy = random_mat(5, 7, 2), y, dx;
  const Mat<double> sentinel = Mat<double>::Constant(2, 3, 42.0);
  Rng rng(3);
  const Rng::State before = rng.state();

  Dropout<double> drop(0.5);
  Dropout<double>::Cache cache{sentinel};
  drop.forward(x, y, cache, rng, /*training=*/false);
  REQUIRE(y == x);
  drop.backward(dy, cache, dx, false);
  REQUIRE(dx == dy);

  Dropout<double> none;  // p = 0
  REQUIRE(none.p == 0);
  none.forward(x, y, cache, rng, /*training=*/true);
  REQUIRE(y == x);
  none.backward(dy, cache, dx, true);
  REQUIRE(dx == dy);

  REQUIRE(cache.mask == sentinel);
  REQUIRE(rng.state() == before);  // nothing drawn
}

TEST_CASE("Dropout: training mask is 0 or 1/(1-p), y = x ⊙ mask, drop rate ≈ p", "[dropout]") {
  for (double p : {0.1, 0.5, 0.9}) {
    const Index rows = 200, cols = 500;  // 1e5 entries: the drop rate's standard error is at most 0.0016
    Mat<float> x = random_mat<float>(rows, cols, 4), y;
    Dropout<float> drop(p);
    Dropout<float>::Cache cache;
    Rng rng(5);
    drop.forward(x, y, cache, rng, true);

    const float scale = static_cast<float>(1.0 / (1.0 - p));
    REQUIRE(cache.mask.rows() == rows);
    REQUIRE(cache.mask.cols() == cols);
    Index dropped = 0;
    bool values_ok = true, product_ok = true;
    for (Index j = 0; j < cols; ++j)
      for (Index i = 0; i < rows; ++i) {
        const float m = cache.mask(i, j);
        values_ok &= (m == 0.0f || m == scale);
        product_ok &= (y(i, j) == x(i, j) * m);
        dropped += (m == 0.0f);
      }
    REQUIRE(values_ok);
    REQUIRE(product_ok);
    const double rate = static_cast<double>(dropped) / static_cast<double>(rows * cols);
    REQUIRE(rate == Approx(p).margin(0.008));
    // Inverted scaling keeps the expectation: mean(mask) ≈ 1.
    REQUIRE(cache.mask.cast<double>().mean() == Approx(1.0).margin(0.008 * scale));
  }
}

TEST_CASE("Dropout: the same seed gives the same mask, another seed another", "[dropout]") {
  Mat<double> x = random_mat(8, 9, 6), y1, y2, y3;
  Dropout<double> drop(0.3);
  Dropout<double>::Cache c1, c2, c3;
  Rng a(7), b(7), c(8);
  drop.forward(x, y1, c1, a, true);
  drop.forward(x, y2, c2, b, true);
  drop.forward(x, y3, c3, c, true);
  REQUIRE(c1.mask == c2.mask);
  REQUIRE(y1 == y2);
  REQUIRE(c1.mask != c3.mask);
  // The generator advances: a second draw from the same Rng gives a new mask.
  drop.forward(x, y2, c2, a, true);
  REQUIRE(c1.mask != c2.mask);
}

TEST_CASE("Dropout: gradient check in training mode with a fixed mask", "[dropout][gradcheck]") {
  for (auto [rows, cols] : {std::pair<Index, Index>{4, 6}, {3, 1}, {1, 5}}) {
    Dropout<double> drop(0.4);
    Dropout<double>::Cache cache;
    Rng rng(9);
    Mat<double> x = random_mat(rows, cols, 10), R = random_mat(rows, cols, 11), y, dx;
    drop.forward(x, y, cache, rng, true);
    drop.backward(R, cache, dx, true);
    REQUIRE((dx.array() - R.array() * cache.mask.array()).abs().maxCoeff() == 0);

    GradCheck check;
    check.add("x", x, dx);
    seqgen_test::require_grad_ok(check.run([&] {
      rng.reseed(9);  // the same mask for every evaluation
      drop.forward(x, y, cache, rng, true);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("Dropout: bad p and a mismatched mask are clear errors", "[dropout][errors]") {
  SEQGEN_THROWS_WITH(Dropout<float>(1.0), ConfigError, "Dropout: p must be in [0, 1), got 1");
  SEQGEN_THROWS_WITH(Dropout<float>(-0.1), ConfigError, "Dropout: p must be in [0, 1), got -0.1");

  Dropout<float> drop(0.2);
  Dropout<float>::Cache cache;
  Rng rng(12);
  Mat<float> x = Mat<float>::Ones(3, 4), y, dx;
  drop.forward(x, y, cache, rng, true);
  SEQGEN_THROWS_WITH(drop.backward(Mat<float>::Ones(3, 5), cache, dx, true), ShapeError,
                     "Dropout: dy is (3, 5) but the mask from forward is (3, 4)");
}

}  // namespace test_dropout
