#include <seqgen/layers/attention.hpp>

#include <cmath>
#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace test_attention {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// Causal self-attention written out with loops, straight from the definition: for every sequence b,
// head h and query i, softmax over keys j <= i of q·k / sqrt(HS), then the weighted sum of values,
// then the output projection. Shares nothing with the layer but its weights.
Mat<double> reference_attention(const CausalSelfAttention<double>& layer, const Mat<double>& x, Index B, Index T) {
  const Index C = layer.channels(), NH = layer.n_head, HS = C / NH;
  const Mat<double>&Wa = layer.qkv.weight.value, &ba = layer.qkv.bias.value;
  const Mat<double>&Wp = layer.proj.weight.value, &bp = layer.proj.bias.value;
  Mat<double> qkv(3 * C, B * T), att_y(C, B * T), out(C, B * T);
  for (Index n = 0; n < B * T; ++n)
    for (Index r = 0; r < 3 * C; ++r) {
      double s = ba(r, 0);
      for (Index c = 0; c < C; ++c) s += Wa(r, c) * x(c, n);
      qkv(r, n) = s;
    }
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < NH; ++h)
      for (Index i = 0; i < T; ++i) {
        std::vector<double> w(i + 1);
        double maxw = -INFINITY, sum = 0;
        for (Index j = 0; j <= i; ++j) {
          double s = 0;
          for (Index d = 0; d < HS; ++d) s += qkv(h * HS + d, b * T + i) * qkv(C + h * HS + d, b * T + j);
          w[j] = s / std::sqrt(double(HS));
          maxw = std::max(maxw, w[j]);
        }
        for (Index j = 0; j <= i; ++j) sum += (w[j] = std::exp(w[j] - maxw));
        for (Index d = 0; d < HS; ++d) {
          double acc = 0;
          for (Index j = 0; j <= i; ++j) acc += w[j] / sum * qkv(2 * C + h * HS + d, b * T + j);
          att_y(h * HS + d, b * T + i) = acc;
        }
      }
  for (Index n = 0; n < B * T; ++n)
    for (Index o = 0; o < C; ++o) {
      double s = bp(o, 0);
      for (Index c = 0; c < C; ++c) s += Wp(o, c) * att_y(c, n);
      out(o, n) = s;
    }
  return out;
}

// (B, T, C, NH): the brief's base case, T = 1, B = 1, a single head, head size 1, and a longer one.
const std::tuple<Index, Index, Index, Index> kShapes[] = {{2, 3, 4, 2}, {2, 1, 4, 2}, {1, 3, 4, 2},
                                                          {2, 3, 4, 1}, {2, 3, 4, 4}, {1, 5, 6, 3}};

}  // namespace

TEST_CASE("CausalSelfAttention: names and parameter shapes follow PyTorch", "[attention]") {
  Rng rng(1);
  CausalSelfAttention<double> attn("blocks.2.attn", 6, 3, rng);
  REQUIRE(attn.qkv.weight.name == "blocks.2.attn.qkv.weight");
  REQUIRE(attn.qkv.bias.name == "blocks.2.attn.qkv.bias");
  REQUIRE(attn.proj.weight.name == "blocks.2.attn.proj.weight");
  REQUIRE(attn.proj.bias.name == "blocks.2.attn.proj.bias");
  REQUIRE(attn.qkv.weight.value.rows() == 18);
  REQUIRE(attn.qkv.weight.value.cols() == 6);
  REQUIRE(attn.head_size() == 2);
  REQUIRE(count_params(attn) == 18 * 6 + 18 + 6 * 6 + 6);
}

TEST_CASE("CausalSelfAttention: forward equals an independent loop implementation", "[attention]") {
  for (auto [B, T, C, NH] : kShapes) {
    INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Rng rng(2);
    CausalSelfAttention<double> attn("attn", C, NH, rng);
    Mat<double> x = random_mat(C, B * T, 3, 2.0), y;
    CausalSelfAttention<double>::Cache cache;
    attn.forward(x, B, T, y, cache);
    const Mat<double> expected = reference_attention(attn, x, B, T);
    REQUIRE(y.rows() == C);
    REQUIRE(y.cols() == B * T);
    REQUIRE((y - expected).cwiseAbs().maxCoeff() < 1e-12);
    // each column of P is a distribution over the keys it may see
    for (Index c = 0; c < cache.att.cols(); ++c) {
      const Index i = c % T;
      REQUIRE(cache.att.col(c).head(i + 1).sum() == Approx(1.0).epsilon(1e-14));
      REQUIRE(cache.att.col(c).tail(T - 1 - i).isZero(0.0));
    }
  }
}

TEST_CASE("CausalSelfAttention: T = 1 returns proj of the V part of qkv exactly", "[attention]") {
  Rng rng(4);
  const Index C = 6, B = 3;
  CausalSelfAttention<double> attn("attn", C, 2, rng);
  Mat<double> x = random_mat(C, B, 5), y, qkv, expected;
  CausalSelfAttention<double>::Cache cache;
  attn.forward(x, B, 1, y, cache);
  attn.qkv.forward(x, qkv);
  attn.proj.forward(qkv.bottomRows(C), expected);
  REQUIRE(y == expected);
}

TEST_CASE("CausalSelfAttention: the output at t depends on positions <= t only", "[attention]") {
  const Index B = 2, T = 5, C = 4, NH = 2;
  Rng rng(6);
  CausalSelfAttention<double> attn("attn", C, NH, rng);
  const Mat<double> x = random_mat(C, B * T, 7);
  Mat<double> y0, y1;
  CausalSelfAttention<double>::Cache cache;
  attn.forward(x, B, T, y0, cache);
  for (Index b = 0; b < B; ++b)
    for (Index tp = 0; tp < T; ++tp) {
      Mat<double> xp = x;
      xp.col(b * T + tp).array() += 0.5;
      attn.forward(xp, B, T, y1, cache);
      for (Index bb = 0; bb < B; ++bb)
        for (Index t = 0; t < T; ++t) {
          INFO("perturbed (b=" << b << ", t=" << tp << "), output (b=" << bb << ", t=" << t << ")");
          const double change = (y1.col(bb * T + t) - y0.col(bb * T + t)).cwiseAbs().maxCoeff();
          if (bb == b && t >= tp)
            REQUIRE(change > 1e-6);
          else
            REQUIRE(change == 0.0);
        }
    }
}

TEST_CASE("CausalSelfAttention: gradient check over shapes (T = 1, B = 1, NH = 1, NH = C)",
          "[attention][gradcheck]") {
  for (auto [B, T, C, NH] : kShapes) {
    INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Rng rng(8);
    CausalSelfAttention<double> attn("attn", C, NH, rng);
    Mat<double> x = random_mat(C, B * T, 9, 2.0), R = random_mat(C, B * T, 10), y, dx;
    CausalSelfAttention<double>::Cache cache;
    attn.forward(x, B, T, y, cache);
    zero_grad(attn);
    attn.backward(x, R, B, T, cache, dx);

    GradCheck check;
    check.add("x", x, dx);
    check.add_params(attn);
    seqgen_test::require_grad_ok(check.run([&, B = B, T = T] {  // (C++17 lambdas cannot capture a binding)
      attn.forward(x, B, T, y, cache);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("CausalSelfAttention: reused cache does not reallocate, backward adds, repeatable", "[attention]") {
  const Index B = 2, T = 4, C = 6, NH = 3;
  Rng rng(11);
  CausalSelfAttention<double> attn("attn", C, NH, rng);
  Mat<double> x = random_mat(C, B * T, 12), dy = random_mat(C, B * T, 13), y, dx1, dx2;
  CausalSelfAttention<double>::Cache cache;
  attn.forward(x, B, T, y, cache);
  zero_grad(attn);
  attn.backward(x, dy, B, T, cache, dx1);
  const Mat<double> once = attn.qkv.weight.grad;
  const double* pointers[] = {cache.qkv.data(), cache.att.data(), cache.y.data(),
                              cache.dy.data(),  cache.dqkv.data(), cache.dp.data()};
  attn.forward(x, B, T, y, cache);
  attn.backward(x, dy, B, T, cache, dx2);
  const double* after[] = {cache.qkv.data(), cache.att.data(), cache.y.data(),
                           cache.dy.data(),  cache.dqkv.data(), cache.dp.data()};
  for (int i = 0; i < 6; ++i) REQUIRE(pointers[i] == after[i]);
  REQUIRE((attn.qkv.weight.grad - 2 * once).norm() < 1e-12);
  REQUIRE(dx1 == dx2);
}

TEST_CASE("CausalSelfAttention: threaded (b, h) loops match the reference and one thread", "[attention]") {
  // Big enough for the parallel path (B·T²·C >= kParallelMinWork).
  const Index B = 3, T = 24, C = 48, NH = 4;
  REQUIRE(B * T * T * C >= kParallelMinWork);
  Rng rng(20);
  CausalSelfAttention<double> attn("attn", C, NH, rng);
  const Mat<double> x = random_mat(C, B * T, 21), dy = random_mat(C, B * T, 22);
  Mat<double> y, dx, dx_serial;
  CausalSelfAttention<double>::Cache cache;
  attn.forward(x, B, T, y, cache);
  REQUIRE((y - reference_attention(attn, x, B, T)).cwiseAbs().maxCoeff() < 1e-12);
  zero_grad(attn);
  attn.backward(x, dy, B, T, cache, dx);
  const Mat<double> dW = attn.qkv.weight.grad;

  const int threads = num_threads();
  set_num_threads(1);
  zero_grad(attn);
  attn.forward(x, B, T, y, cache);
  attn.backward(x, dy, B, T, cache, dx_serial);
  set_num_threads(threads);
  REQUIRE((dx - dx_serial).cwiseAbs().maxCoeff() < 1e-12);
  REQUIRE((attn.qkv.weight.grad - dW).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("CausalSelfAttention: attend_cached, query by query over a cache, equals the loop implementation",
          "[attention]") {
  for (const auto& shape : kShapes) {
    const Index B = std::get<0>(shape), T = std::get<1>(shape), C = std::get<2>(shape), NH = std::get<3>(shape);
    INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Rng rng(31);
    const CausalSelfAttention<double> layer("attn", C, NH, rng);
    const Mat<double> x = random_mat(C, B * T, 32, 2.0);
    Mat<double> qkv;
    layer.qkv.forward(x, qkv);
    // The cache of sequence b: rows [C, 3C) of its qkv columns, as a decoder keeps them.
    Mat<double> att(C, B * T), scores(T, 1);
    att.setConstant(std::nan(""));
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < T; ++i)
        for (Index h = 0; h < NH; ++h)
          layer.attend_cached(h, qkv.col(b * T + i).head(C), qkv.block(C, b * T, 2 * C, i + 1),
                              scores.topRows(i + 1), att.col(b * T + i));
    const Mat<double> y = (layer.proj.weight.value * att).colwise() + layer.proj.bias.value.col(0);
    CHECK((y - reference_attention(layer, x, B, T)).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("CausalSelfAttention: float and double forward agree", "[attention]") {
  const Index B = 2, T = 6, C = 8, NH = 2;
  Rng rng_d(14), rng_f(14);  // same draws, so the float weights are the double ones rounded
  CausalSelfAttention<double> attn_d("attn", C, NH, rng_d);
  CausalSelfAttention<float> attn_f("attn", C, NH, rng_f);
  const Mat<double> x = random_mat(C, B * T, 15);
  Mat<double> y_d;
  Mat<float> y_f;
  CausalSelfAttention<double>::Cache cache_d;
  CausalSelfAttention<float>::Cache cache_f;
  attn_d.forward(x, B, T, y_d, cache_d);
  attn_f.forward(x.cast<float>(), B, T, y_f, cache_f);
  REQUIRE((y_f.cast<double>() - y_d).cwiseAbs().maxCoeff() < 1e-5);
}

TEST_CASE("CausalSelfAttention: clear errors for bad configs and shapes", "[attention][errors]") {
  Rng rng(16);
  SEQGEN_THROWS_WITH(CausalSelfAttention<float>("h.0.attn", 6, 4, rng), ConfigError,
                     "CausalSelfAttention 'h.0.attn': C=6 is not divisible by NH=4");
  SEQGEN_THROWS_WITH(CausalSelfAttention<float>("attn", 0, 2, rng), ConfigError,
                     "CausalSelfAttention 'attn': C and NH must be positive, got C=0 NH=2");
  SEQGEN_THROWS_WITH(CausalSelfAttention<float>("attn", 4, 0, rng), ConfigError,
                     "C and NH must be positive, got C=4 NH=0");

  CausalSelfAttention<float> attn("attn", 4, 2, rng);
  CausalSelfAttention<float>::Cache cache;
  Mat<float> y, dx;
  SEQGEN_THROWS_WITH(attn.forward(Mat<float>::Zero(3, 6), 2, 3, y, cache), ShapeError,
                     "CausalSelfAttention 'attn': input has 3 rows, expected 4 (C)");
  SEQGEN_THROWS_WITH(attn.forward(Mat<float>::Zero(4, 6), 2, 2, y, cache), ShapeError,
                     "CausalSelfAttention 'attn': input has 6 columns, expected B*T = 2*2 = 4");
  SEQGEN_THROWS_WITH(attn.forward(Mat<float>::Zero(4, 0), 0, 3, y, cache), ShapeError,
                     "B and T must be positive, got B=0 T=3");

  const Mat<float> x = Mat<float>::Ones(4, 6);
  attn.forward(x, 2, 3, y, cache);
  SEQGEN_THROWS_WITH(attn.backward(x, Mat<float>::Zero(4, 5), 2, 3, cache, dx), ShapeError,
                     "CausalSelfAttention 'attn': dy is (4, 5), expected (4, 6)");
  SEQGEN_THROWS_WITH(attn.backward(x, Mat<float>::Zero(4, 6), 3, 2, cache, dx), ShapeError,
                     "CausalSelfAttention 'attn': cache is for 6 tokens with T=3, expected B=3 T=2");
}

}  // namespace test_attention
