#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/softmax_head.hpp>

#include "test_util.hpp"

namespace test_softmax_head {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

constexpr Token kIgnore = SoftmaxHead<double>::kIgnore;

Param<double> random_weight(Index C, Index V, std::uint64_t seed, double scale = 1.0) {
  Param<double> w("wte.weight", C, V);
  w.value = random_mat(C, V, seed, scale);
  return w;
}

// −mean log softmax of Wᵀx at the targets, by explicit loops in long double without a max shift
// (fine for logits of order 1).
double reference_loss(const Mat<double>& W, const Mat<double>& x, const std::vector<Token>& targets) {
  long double total = 0;
  Index count = 0;
  for (Index n = 0; n < x.cols(); ++n) {
    if (targets[n] == kIgnore) continue;
    long double sum = 0, zt = 0;
    for (Index v = 0; v < W.cols(); ++v) {
      long double z = 0;
      for (Index c = 0; c < W.rows(); ++c) z += static_cast<long double>(W(c, v)) * x(c, n);
      sum += std::exp(z);
      if (v == targets[n]) zt = z;
    }
    total += std::log(sum) - zt;
    ++count;
  }
  return count ? static_cast<double>(total / count) : 0.0;
}

}  // namespace

TEST_CASE("SoftmaxHead: gradient check of weight and x with ignored targets", "[softmax_head][gradcheck]") {
  struct Case {
    Index C, V;
    std::vector<Token> targets;
  };
  for (const Case& c : {Case{4, 6, {5, kIgnore, 0, 2, kIgnore}}, Case{3, 2, {1}}, Case{1, 5, {4, 4, 0}},
                        Case{7, 3, {kIgnore, 2}}}) {
    const Index N = static_cast<Index>(c.targets.size());
    SoftmaxHead<double> head;
    Param<double> w = random_weight(c.C, c.V, 1, 1.5);
    Mat<double> x = random_mat(c.C, N, 2, 1.5), dx;
    SoftmaxHead<double>::Cache cache;
    head.forward(w, x, c.targets, cache);
    w.zero_grad();
    head.backward(w, x, c.targets, cache, dx);

    // ignored columns receive no gradient
    for (Index n = 0; n < N; ++n)
      if (c.targets[n] == kIgnore) REQUIRE(dx.col(n).isZero(0));

    GradCheck check;
    check.add("weight", w.value, w.grad);
    check.add("x", x, dx);
    seqgen_test::require_grad_ok(check.run([&] { return head.forward(w, x, c.targets, cache); }));
  }
}

TEST_CASE("SoftmaxHead: backward is the gradient of the mean loss over the targets it is given", "[softmax_head]") {
  // The probabilities forward keeps do not depend on the targets, so a backward given other
  // targets (here with two of five ignored) must return the gradient of the mean over those: its
  // divisor is their count, 3, not the 5 targets forward counted.
  const Index C = 4, V = 6;
  const std::vector<Token> all{5, 1, 0, 2, 3}, masked{5, kIgnore, 0, 2, kIgnore};
  SoftmaxHead<double> head;
  Param<double> w = random_weight(C, V, 3, 1.5);
  Mat<double> x = random_mat(C, 5, 4, 1.5), dx, dx_masked;
  SoftmaxHead<double>::Cache cache;
  head.forward(w, x, masked, cache);
  w.zero_grad();
  head.backward(w, x, masked, cache, dx_masked);
  const Mat<double> dw_masked = w.grad;

  head.forward(w, x, all, cache);
  REQUIRE(cache.count == 5);
  w.zero_grad();
  head.backward(w, x, masked, cache, dx);
  REQUIRE((dx - dx_masked).cwiseAbs().maxCoeff() < 1e-15);
  REQUIRE((w.grad - dw_masked).cwiseAbs().maxCoeff() < 1e-15);

  GradCheck check;
  check.add("weight", w.value, w.grad);
  check.add("x", x, dx);
  seqgen_test::require_grad_ok(check.run([&] { return reference_loss(w.value, x, masked); }));
}

TEST_CASE("SoftmaxHead: loss and probabilities match an independent computation", "[softmax_head]") {
  const Index C = 5, V = 9, N = 6;
  const std::vector<Token> targets = {3, 8, kIgnore, 0, 3, 7};
  SoftmaxHead<double> head;
  Param<double> w = random_weight(C, V, 3);
  Mat<double> x = random_mat(C, N, 4, 2.0);
  SoftmaxHead<double>::Cache cache;
  const double loss = head.forward(w, x, targets, cache);
  REQUIRE(cache.count == 5);
  REQUIRE(loss == Approx(reference_loss(w.value, x, targets)).epsilon(1e-13));

  Mat<double> z;
  head.logits(w, x, z);
  REQUIRE(z.rows() == V);
  REQUIRE(z.cols() == N);
  for (Index n = 0; n < N; ++n) {
    const double sum = z.col(n).array().exp().sum();
    for (Index v = 0; v < V; ++v) {
      double zv = 0;
      for (Index c = 0; c < C; ++c) zv += w.value(c, v) * x(c, n);
      REQUIRE(z(v, n) == Approx(zv).epsilon(1e-13));
      REQUIRE(cache.probs(v, n) == Approx(std::exp(zv) / sum).epsilon(1e-12));
    }
  }
}

TEST_CASE("SoftmaxHead: zero weight gives the uniform distribution and loss log V", "[softmax_head]") {
  for (Index V : {1, 2, 50257}) {
    const Index C = 3, N = 4;
    SoftmaxHead<double> head;
    Param<double> w("w", C, V);  // zeros
    Mat<double> x = random_mat(C, N, 5), dx;
    std::vector<Token> targets = {0, static_cast<Token>(V - 1), kIgnore, static_cast<Token>(V / 2)};
    SoftmaxHead<double>::Cache cache;
    REQUIRE(head.forward(w, x, targets, cache) == Approx(std::log(static_cast<double>(V))).margin(1e-12));
    REQUIRE((cache.probs.array() - 1.0 / V).abs().maxCoeff() < 1e-15);
    // With W = 0, dx = W δ = 0 and dW = x δᵀ: column v gets Σ_n x_n (1/V − [t_n = v]) / 3.
    head.backward(w, x, targets, cache, dx);
    REQUIRE(dx.isZero(0));
    Mat<double> expected = Mat<double>::Zero(C, V);
    for (Index n : {0, 1, 3}) {
      expected.colwise() += x.col(n) / (3.0 * V);
      expected.col(targets[n]) -= x.col(n) / 3.0;
    }
    REQUIRE((w.grad - expected).cwiseAbs().maxCoeff() < 1e-15);
  }
}

TEST_CASE("SoftmaxHead: every target ignored gives loss 0 and no gradient", "[softmax_head]") {
  SoftmaxHead<double> head;
  Param<double> w = random_weight(3, 4, 6);
  Mat<double> x = random_mat(3, 2, 7), dx;
  const std::vector<Token> targets = {kIgnore, kIgnore};
  SoftmaxHead<double>::Cache cache;
  REQUIRE(head.forward(w, x, targets, cache) == 0.0);
  REQUIRE(cache.count == 0);
  head.backward(w, x, targets, cache, dx);
  REQUIRE(w.grad.isZero(0));
  REQUIRE(dx.rows() == 3);
  REQUIRE(dx.cols() == 2);
  REQUIRE(dx.isZero(0));
}

TEST_CASE("SoftmaxHead: backward adds into weight.grad; a tied weight sums both uses", "[softmax_head]") {
  SoftmaxHead<double> head;
  Param<double> w = random_weight(4, 5, 8);
  Mat<double> x = random_mat(4, 3, 9), dx1, dx2;
  const std::vector<Token> targets = {1, 4, 0};
  SoftmaxHead<double>::Cache cache;
  head.forward(w, x, targets, cache);
  w.zero_grad();
  head.backward(w, x, targets, cache, dx1);
  const Mat<double> once = w.grad;
  head.forward(w, x, targets, cache);
  head.backward(w, x, targets, cache, dx2);
  REQUIRE((w.grad - 2 * once).norm() < 1e-14);
  REQUIRE(dx1 == dx2);
}

TEST_CASE("SoftmaxHead: logits of ±1e4 stay finite and exact", "[softmax_head]") {
  // C = 1, x = 1e4: logits are 1e4 · W[0, v]. W = (1, −1, 1, −1, 0.5).
  auto run = [](auto zero) {
    using Scalar = decltype(zero);
    SoftmaxHead<Scalar> head;
    Param<Scalar> w("w", 1, 5);
    w.value << 1, -1, 1, -1, 0.5;
    Mat<Scalar> x = Mat<Scalar>::Constant(1, 3, Scalar(1e4)), dx;
    const std::vector<Token> targets = {0, 1, 4};
    typename SoftmaxHead<Scalar>::Cache cache;
    const Scalar loss = head.forward(w, x, targets, cache);
    REQUIRE(std::isfinite(loss));
    REQUIRE(cache.probs.allFinite());
    // −log p: target 0 ties with v = 2, so log 2; target 1 sits 2e4 below the max; target 4, 5e3 below.
    const double expected = (std::log(2.0) + (2e4 + std::log(2.0)) + (5e3 + std::log(2.0))) / 3;
    REQUIRE(static_cast<double>(loss) == Approx(expected).epsilon(1e-6));
    head.backward(w, x, targets, cache, dx);
    REQUIRE(dx.allFinite());
    REQUIRE(w.grad.allFinite());
    // Target 0 has p = 1/2, so its δ is −1/2 / 3 and dx[0, 0] = Σ_v W_v δ_v = (1/2 − 1 + 1/2)/3 = 0.
    REQUIRE(std::abs(static_cast<double>(dx(0, 0))) < 1e-6);
  };
  run(0.0);
  run(0.0f);
}

TEST_CASE("SoftmaxHead: the loss does not depend on the thread count", "[softmax_head]") {
  SoftmaxHead<float> head;
  Param<float> w("w", 16, 40);
  w.value = random_mat<float>(16, 40, 10);
  Mat<float> x = random_mat<float>(16, 64, 11);
  std::vector<Token> targets(64);
  for (Index n = 0; n < 64; ++n) targets[n] = static_cast<Token>((7 * n) % 40);
  SoftmaxHead<float>::Cache cache;
  const int saved = num_threads();
  set_num_threads(1);
  const float a = head.forward(w, x, targets, cache);
  set_num_threads(4);
  const float b = head.forward(w, x, targets, cache);
  set_num_threads(saved);
  REQUIRE(a == b);
}

TEST_CASE("SoftmaxHead: bad targets, shapes and call order are clear errors", "[softmax_head][errors]") {
  SoftmaxHead<float> head("lm_head");
  Param<float> w("wte.weight", 3, 10);
  Mat<float> x = Mat<float>::Ones(3, 2), dx, z;
  SoftmaxHead<float>::Cache cache;
  const std::vector<Token> too_large{1, 10}, negative{-2, 0}, one{1}, two{1, 2}, three{1, 2, 3};
  SEQGEN_THROWS_WITH(head.forward(w, x, too_large, cache), IndexError,
                     "SoftmaxHead 'lm_head': target 10 at position 1 is out of range [0, 10)");
  SEQGEN_THROWS_WITH(head.forward(w, x, negative, cache), IndexError,
                     "target -2 at position 0 is out of range [0, 10) and is not the ignore index -1");
  SEQGEN_THROWS_WITH(head.forward(w, x, one, cache), ShapeError,
                     "SoftmaxHead 'lm_head': 1 targets for 2 input columns");
  Mat<float> bad = Mat<float>::Ones(4, 2);
  SEQGEN_THROWS_WITH(head.forward(w, bad, two, cache), ShapeError,
                     "SoftmaxHead 'lm_head': input has 4 rows, expected 3 (the rows C of weight 'wte.weight')");
  SEQGEN_THROWS_WITH(head.logits(w, bad, z), ShapeError, "input has 4 rows, expected 3");
  SEQGEN_THROWS_WITH(head.forward(Param<float>("empty", 0, 0), Mat<float>(0, 2), two, cache),
                     ShapeError, "weight 'empty' is empty");

  const std::vector<Token> targets = {1, 2};
  head.forward(w, x, targets, cache);
  Mat<float> wider = Mat<float>::Ones(3, 3);
  SEQGEN_THROWS_WITH(head.backward(w, wider, three, cache, dx), ShapeError,
                     "SoftmaxHead 'lm_head': cache holds (10, 2) probabilities, expected (10, 3)");
  head.backward(w, x, targets, cache, dx);
  SEQGEN_THROWS_WITH(head.backward(w, x, targets, cache, dx), ConfigError,
                     "SoftmaxHead 'lm_head': backward called twice after one forward");
}

}  // namespace test_softmax_head
