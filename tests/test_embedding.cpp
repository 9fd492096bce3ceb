#include <seqgen/layers/embedding.hpp>

#include "test_util.hpp"

namespace test_embedding {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEST_CASE("Embedding: gradient check with repeated ids, N = 1 and V = 1", "[embedding][gradcheck]") {
  struct Case {
    Index V, C;
    std::vector<Token> ids;
  };
  for (const Case& c : {Case{5, 3, {4, 0, 4, 2}}, Case{1, 2, {0}}, Case{3, 1, {2, 2, 0, 1, 2, 0}}}) {
    Rng rng(1);
    Embedding<double> emb("wte", c.V, c.C, rng);
    const Index N = static_cast<Index>(c.ids.size());
    Mat<double> R = random_mat(c.C, N, 2), y;
    emb.forward(c.ids, y);
    zero_grad(emb);
    emb.backward(c.ids, R);

    GradCheck check;
    check.add_params(emb);
    seqgen_test::require_grad_ok(check.run([&] {
      emb.forward(c.ids, y);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("Embedding: forward copies the id's column; names and decay follow PyTorch/nanoGPT", "[embedding]") {
  Rng rng(3);
  Embedding<double> emb("transformer.wte", 7, 4, rng);
  REQUIRE(emb.weight.name == "transformer.wte.weight");
  REQUIRE_FALSE(emb.weight.decay);
  REQUIRE(emb.vocab_size() == 7);
  REQUIRE(emb.dim() == 4);
  REQUIRE(emb.weight.value.rows() == 4);
  REQUIRE(emb.weight.value.cols() == 7);

  const std::vector<Token> ids = {6, 0, 3, 3, 1};
  Mat<double> y = Mat<double>::Constant(2, 2, 9.0);  // a wrong-shaped workspace is resized
  emb.forward(ids, y);
  REQUIRE(y.rows() == 4);
  REQUIRE(y.cols() == 5);
  for (Index n = 0; n < 5; ++n)
    for (Index c = 0; c < 4; ++c) REQUIRE(y(c, n) == emb.weight.value(c, ids[n]));
}

TEST_CASE("Embedding: initialisation is N(0, 1)", "[embedding]") {
  Rng rng(11);
  Embedding<double> emb("wte", 2000, 16, rng);
  const auto& w = emb.weight.value;
  const double mean = w.mean();
  const double var = (w.array() - mean).square().mean();
  // 32000 samples: the standard error of the mean is 0.0056 and of the variance about 0.008.
  REQUIRE(std::abs(mean) < 0.03);
  REQUIRE(var == Approx(1.0).margin(0.04));
  // Fraction within one standard deviation: 0.6827 for a normal, 0.577 for a uniform of the same variance.
  const double within = (w.array().abs() < 1.0).cast<double>().mean();
  REQUIRE(within == Approx(0.6827).margin(0.015));
}

TEST_CASE("Embedding: backward accumulates repeated ids and adds into the gradient", "[embedding]") {
  Rng rng(5);
  Embedding<double> emb("wte", 4, 3, rng);
  const std::vector<Token> ids = {2, 0, 2, 2};
  Mat<double> dy = random_mat(3, 4, 6);
  zero_grad(emb);
  emb.backward(ids, dy);

  Mat<double> expected = Mat<double>::Zero(3, 4);
  expected.col(2) = dy.col(0) + dy.col(2) + dy.col(3);
  expected.col(0) = dy.col(1);
  REQUIRE((emb.weight.grad - expected).norm() < 1e-14);

  emb.backward(ids, dy);
  REQUIRE((emb.weight.grad - 2 * expected).norm() < 1e-14);
}

TEST_CASE("Embedding: out-of-range ids and bad shapes are clear errors", "[embedding][errors]") {
  Rng rng(7);
  Embedding<float> emb("wte", 10, 3, rng);
  Mat<float> y;
  const std::vector<Token> negative{1, 2, -1}, too_large{10};
  SEQGEN_THROWS_WITH(emb.forward(negative, y), IndexError,
                     "Embedding 'wte': token id -1 at position 2 is out of range [0, 10)");
  SEQGEN_THROWS_WITH(emb.forward(too_large, y), IndexError,
                     "Embedding 'wte': token id 10 at position 0 is out of range [0, 10)");

  // backward checks ids too, before touching the gradient
  zero_grad(emb);
  Mat<float> dy = Mat<float>::Ones(3, 2);
  const std::vector<Token> one_bad{3, 10}, three{3, 4, 5};
  SEQGEN_THROWS_WITH(emb.backward(one_bad, dy), IndexError, "token id 10 at position 1");
  REQUIRE(emb.weight.grad.isZero());
  SEQGEN_THROWS_WITH(emb.backward(three, dy), ShapeError,
                     "Embedding 'wte': dy is (3, 2), expected (3, 3)");

  SEQGEN_THROWS_WITH(Embedding<float>("wte", 0, 3, rng), ConfigError, "sizes must be positive, got V=0 C=3");
  SEQGEN_THROWS_WITH(Embedding<float>("wte", 3, 0, rng), ConfigError, "sizes must be positive");
}

TEST_CASE("Embedding: an empty batch gives an empty output", "[embedding]") {
  Rng rng(8);
  Embedding<double> emb("wte", 3, 2, rng);
  Mat<double> y;
  emb.forward(TokenSpan(), y);
  REQUIRE(y.rows() == 2);
  REQUIRE(y.cols() == 0);
}

}  // namespace test_embedding
