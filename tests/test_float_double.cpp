// float (which trains) and double (which checks gradients) compute the same thing: with the same
// weights, cast, their forward passes agree to float precision.
#include <seqgen/layers/embedding.hpp>
#include <seqgen/layers/layernorm.hpp>
#include <seqgen/layers/softmax_head.hpp>

#include "test_util.hpp"

namespace test_float_double {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// max |a − b| / max |b|: the error relative to the size of the reference values.
double rel_diff(const Mat<float>& a, const Mat<double>& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  return (a.cast<double>() - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

}  // namespace

TEST_CASE("float and double: Embedding", "[float_double][embedding]") {
  Rng rd(1), rf(1);
  Embedding<double> ed("wte", 11, 6, rd);
  Embedding<float> ef("wte", 11, 6, rf);
  // The same seed draws the same N(0, 1) table, rounded to float.
  REQUIRE(ef.weight.value == ed.weight.value.cast<float>());
  const std::vector<Token> ids = {3, 10, 0, 3, 7};
  Mat<double> yd;
  Mat<float> yf;
  ed.forward(ids, yd);
  ef.forward(ids, yf);
  REQUIRE(yf == yd.cast<float>());  // a lookup is exact
}

TEST_CASE("float and double: LayerNorm forward and backward", "[float_double][layernorm]") {
  const Index C = 48, N = 10;
  LayerNorm<double> ld("ln", C);
  ld.weight.value = random_mat(C, 1, 2, 2.0);
  ld.bias.value = random_mat(C, 1, 3);
  LayerNorm<float> lf("ln", C);
  lf.weight.value = ld.weight.value.cast<float>();
  lf.bias.value = ld.bias.value.cast<float>();

  const Mat<float> xf = random_mat<float>(C, N, 4, 3.0), dyf = random_mat<float>(C, N, 5);
  const Mat<double> xd = xf.cast<double>(), dyd = dyf.cast<double>();
  Mat<double> yd, dxd;
  Mat<float> yf, dxf;
  LayerNorm<double>::Cache cd;
  LayerNorm<float>::Cache cf;
  ld.forward(xd, yd, cd);
  lf.forward(xf, yf, cf);
  REQUIRE(rel_diff(yf, yd) < 1e-5);

  zero_grad(ld);
  zero_grad(lf);
  ld.backward(xd, dyd, cd, dxd);
  lf.backward(xf, dyf, cf, dxf);
  REQUIRE(rel_diff(dxf, dxd) < 1e-5);
  REQUIRE(rel_diff(lf.weight.grad, ld.weight.grad) < 1e-5);
  REQUIRE(rel_diff(lf.bias.grad, ld.bias.grad) < 1e-5);
}

TEST_CASE("float and double: SoftmaxHead loss, probabilities and gradients", "[float_double][softmax_head]") {
  const Index C = 32, V = 100, N = 12;
  Param<double> wd("w", C, V);
  wd.value = random_mat(C, V, 6, 0.5);
  Param<float> wf("w", C, V);
  wf.value = wd.value.cast<float>();
  const Mat<float> xf = random_mat<float>(C, N, 7, 0.5);
  const Mat<double> xd = xf.cast<double>();
  std::vector<Token> targets(N);
  for (Index n = 0; n < N; ++n) targets[n] = static_cast<Token>((13 * n + 5) % V);
  targets[4] = SoftmaxHead<float>::kIgnore;

  SoftmaxHead<double> hd;
  SoftmaxHead<float> hf;
  SoftmaxHead<double>::Cache cd;
  SoftmaxHead<float>::Cache cf;
  const double ld = hd.forward(wd, xd, targets, cd);
  const float lf = hf.forward(wf, xf, targets, cf);
  REQUIRE(static_cast<double>(lf) == Approx(ld).epsilon(1e-5));
  REQUIRE(rel_diff(cf.probs, cd.probs) < 1e-5);

  Mat<double> zd;
  Mat<float> zf;
  hd.logits(wd, xd, zd);
  hf.logits(wf, xf, zf);
  REQUIRE(rel_diff(zf, zd) < 1e-5);

  Mat<double> dxd;
  Mat<float> dxf;
  hd.backward(wd, xd, targets, cd, dxd);
  hf.backward(wf, xf, targets, cf, dxf);
  REQUIRE(rel_diff(dxf, dxd) < 1e-5);
  REQUIRE(rel_diff(wf.grad, wd.grad) < 1e-5);
}

}  // namespace test_float_double
