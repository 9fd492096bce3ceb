#include <seqgen/layers/attention.hpp>

#include <cmath>
#include <limits>
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
    const Mat<double> expected = reference_attention(attn, x, B, T);
    for (AttentionKernel kernel : {AttentionKernel::reference, AttentionKernel::flash}) {
      INFO("flash kernel: " << (kernel == AttentionKernel::flash));
      attn.kernel = kernel;
      CausalSelfAttention<double>::Cache cache;
      attn.forward(x, B, T, y, cache);
      REQUIRE(y.rows() == C);
      REQUIRE(y.cols() == B * T);
      REQUIRE((y - expected).cwiseAbs().maxCoeff() < 1e-12);
      // each column of P is a distribution over the keys it may see
      REQUIRE(cache.att.cols() == (kernel == AttentionKernel::reference ? T * B * NH : 0));
      for (Index c = 0; c < cache.att.cols(); ++c) {
        const Index i = c % T;
        REQUIRE(cache.att.col(c).head(i + 1).sum() == Approx(1.0).epsilon(1e-14));
        REQUIRE(cache.att.col(c).tail(T - 1 - i).isZero(0.0));
      }
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
    attn.kernel = AttentionKernel::reference;  // the flash kernel's: test_flash_attention.cpp
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
  attn.kernel = AttentionKernel::reference;  // the flash kernel's cache: test_flash_attention.cpp
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

// T beyond one block of kBlock = 64 queries: T = 64 is one full block, 65 a full block and a
// one-column ragged block, 130 two full blocks and a ragged one, 200 three and a ragged one. The
// block products (S and Y over keys [0, j1), dV and dK over queries [i0, T)) only differ from the
// one-block case when T > kBlock.
const Index kLongT[] = {64, 65, 130, 200};

TEST_CASE("CausalSelfAttention: several query blocks and a ragged last block, forward equals the loop reference",
          "[attention]") {
  static_assert(CausalSelfAttention<double>::kBlock == 64, "the T below are chosen around kBlock = 64");
  for (Index T : kLongT) {
    for (auto [B, C, NH] : {std::tuple<Index, Index, Index>{2, 8, 2}, {1, 12, 3}}) {
      INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
      Rng rng(30);
      CausalSelfAttention<double> attn("attn", C, NH, rng);
      // scale 2: the scores spread, so each softmax column is far from uniform and a wrong key
      // block would show
      const Mat<double> x = random_mat(C, B * T, 31, 2.0);
      const Mat<double> expected = reference_attention(attn, x, B, T);
      for (AttentionKernel kernel : {AttentionKernel::reference, AttentionKernel::flash}) {
        INFO("flash kernel: " << (kernel == AttentionKernel::flash));
        attn.kernel = kernel;
        Mat<double> y;
        CausalSelfAttention<double>::Cache cache;
        attn.forward(x, B, T, y, cache);
        REQUIRE((y - expected).cwiseAbs().maxCoeff() < 1e-12);
        REQUIRE(cache.att.cols() == (kernel == AttentionKernel::reference ? T * B * NH : 0));
        for (Index c = 0; c < cache.att.cols(); ++c) {
          const Index i = c % T;
          REQUIRE(cache.att.col(c).head(i + 1).sum() == Approx(1.0).epsilon(1e-13));
          REQUIRE(cache.att.col(c).tail(T - 1 - i).isZero(0.0));
        }
      }
    }
  }
}

TEST_CASE("CausalSelfAttention: across block edges the output at t depends on positions <= t only", "[attention]") {
  const Index B = 2, T = 130, C = 4, NH = 2;
  Rng rng(32);
  CausalSelfAttention<double> attn("attn", C, NH, rng);
  const Mat<double> x = random_mat(C, B * T, 33);
  Mat<double> y0, y1;
  CausalSelfAttention<double>::Cache cache;
  attn.forward(x, B, T, y0, cache);
  for (Index tp : {0, 63, 64, 65, 127, 128, 129}) {
    Mat<double> xp = x;
    xp.col(1 * T + tp).array() += 0.5;  // sequence b = 1
    attn.forward(xp, B, T, y1, cache);
    for (Index t = 0; t < T; ++t) {
      INFO("perturbed t=" << tp << ", output t=" << t);
      REQUIRE((y1.col(t) - y0.col(t)).cwiseAbs().maxCoeff() == 0.0);  // the other sequence
      const double change = (y1.col(T + t) - y0.col(T + t)).cwiseAbs().maxCoeff();
      if (t >= tp)
        REQUIRE(change > 1e-9);
      else
        REQUIRE(change == 0.0);
    }
  }
}

TEST_CASE("CausalSelfAttention: gradient check with several query blocks and a ragged last block",
          "[attention][gradcheck]") {
  // Small C (two heads of 2) and B = 1 keep the finite differences affordable (two forwards per
  // element). Every weight is checked at every T: the qkv weight gradient sums dQ, dK and dV over
  // all positions, so a wrong block anywhere shows there. x itself at T = 65 (a one-column ragged
  // block) and 130. One thread: a team per forward would cost more than the forward (the threaded
  // path is compared with the loop reference in the tests above and below).
  const int threads = num_threads();
  set_num_threads(1);
  for (Index T : kLongT) {
    const Index B = 1, C = 4, NH = 2;
    INFO("T=" << T);
    Rng rng(34);
    CausalSelfAttention<double> attn("attn", C, NH, rng);
    attn.kernel = AttentionKernel::reference;  // the flash kernel's: test_flash_attention.cpp
    Mat<double> x = random_mat(C, B * T, 35, 2.0), R = random_mat(C, B * T, 36), y, dx;
    CausalSelfAttention<double>::Cache cache;
    attn.forward(x, B, T, y, cache);
    zero_grad(attn);
    attn.backward(x, R, B, T, cache, dx);

    GradCheck check;
    if (T == 65 || T == 130) check.add("x", x, dx);
    check.add_params(attn);
    seqgen_test::require_grad_ok(check.run([&, T = T] {
      attn.forward(x, B, T, y, cache);
      return (y.array() * R.array()).sum();
    }));
  }
  set_num_threads(threads);
}

TEST_CASE("CausalSelfAttention: a longer sequence with R zero past T0 gives the gradients of the first T0 positions",
          "[attention]") {
  // Causality gives a second reference: with R zero after position T0, the loss Σ y ⊙ R only reads
  // positions < T0, so the first T0 positions of a length-T sequence must give the same y, dx and
  // parameter gradients as a sequence of length T0 alone, and positions >= T0 get dx = 0. The
  // pairs put T0 on and around block edges, and T0 = 30 (a single block) against T = 130 (three).
  const Index B = 2, C = 8, NH = 2;
  Rng rng(37);
  CausalSelfAttention<double> attn("attn", C, NH, rng);
  for (auto [T, T0] : {std::pair<Index, Index>{200, 64}, {200, 65}, {130, 129}, {65, 64}, {130, 30}}) {
    INFO("T=" << T << " T0=" << T0);
    const Mat<double> x = random_mat(C, B * T, 38);
    Mat<double> R = random_mat(C, B * T, 39);
    for (Index b = 0; b < B; ++b) R.middleCols(b * T + T0, T - T0).setZero();
    Mat<double> x0(C, B * T0), R0(C, B * T0);
    for (Index b = 0; b < B; ++b) {
      x0.middleCols(b * T0, T0) = x.middleCols(b * T, T0);
      R0.middleCols(b * T0, T0) = R.middleCols(b * T, T0);
    }
    Mat<double> y, y0, dx, dx0;
    CausalSelfAttention<double>::Cache cache, cache0;
    attn.forward(x, B, T, y, cache);
    zero_grad(attn);
    attn.backward(x, R, B, T, cache, dx);
    std::vector<Mat<double>> grads;
    attn.for_each_param([&](Param<double>& p) { grads.push_back(p.grad); });
    attn.forward(x0, B, T0, y0, cache0);
    zero_grad(attn);
    attn.backward(x0, R0, B, T0, cache0, dx0);
    std::size_t k = 0;
    attn.for_each_param([&](Param<double>& p) {
      INFO(p.name);
      REQUIRE((p.grad - grads[k++]).cwiseAbs().maxCoeff() < 1e-12);
    });
    for (Index b = 0; b < B; ++b) {
      REQUIRE((dx.middleCols(b * T, T0) - dx0.middleCols(b * T0, T0)).cwiseAbs().maxCoeff() < 1e-12);
      REQUIRE(dx.middleCols(b * T + T0, T - T0).isZero(0.0));  // positions after T0 get no gradient
      REQUIRE((y.middleCols(b * T, T0) - y0.middleCols(b * T0, T0)).cwiseAbs().maxCoeff() < 1e-12);
    }
  }
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
  // (2^62 + 2)·4 wraps around to the 8 columns given: the check must not form B·T
  SEQGEN_THROWS_WITH(attn.forward(Mat<float>::Zero(4, 8), (Index(1) << 62) + 2, 4, y, cache), ShapeError,
                     "input has 8 columns, expected B*T = 4611686018427387906*4 = more than 2^63 - 1");
  const Index max = std::numeric_limits<Index>::max();
  SEQGEN_THROWS_WITH(attn.forward(Mat<float>::Zero(4, 8), max, max, y, cache), ShapeError,
                     "expected B*T = 9223372036854775807*9223372036854775807 = more than 2^63 - 1");
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
