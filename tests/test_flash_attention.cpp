#include <seqgen/core/gradcheck.hpp>
#include <seqgen/layers/attention.hpp>
#include <seqgen/layers/flash_attention.hpp>

#include <tuple>

#include "test_util.hpp"

namespace test_flash_attention {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// T around the blocks of 64 keys and 256 queries: one token, less than a block, exactly one key
// block, one and a column, two and a ragged one, three and a ragged one, one query block and a
// column (so the second query block meets keys it sees whole and a diagonal block).
const Index kTs[] = {1, 7, 64, 65, 130, 200, 257};
static_assert(kFlashQueryBlock == 256 && kFlashKeyBlock == 64, "the T above are chosen around these blocks");

// (B, C, NH)
const std::tuple<Index, Index, Index> kWidths[] = {{1, 16, 1}, {2, 32, 4}, {3, 24, 2}};

template <typename Scalar>
struct Run {
  Mat<Scalar> y, dx, dqkv_w, dqkv_b, dproj_w, dproj_b;
};

// Forward and backward of `attn` with the given kernel, gradients from zero.
template <typename Scalar>
Run<Scalar> run(CausalSelfAttention<Scalar>& attn, AttentionKernel kernel, const Mat<Scalar>& x,
                const Mat<Scalar>& dy, Index B, Index T) {
  attn.kernel = kernel;
  typename CausalSelfAttention<Scalar>::Cache cache;
  Run<Scalar> r;
  attn.forward(x, B, T, r.y, cache);
  REQUIRE(cache.flash == (kernel == AttentionKernel::flash));
  zero_grad(attn);
  attn.backward(x, dy, B, T, cache, r.dx);
  r.dqkv_w = attn.qkv.weight.grad;
  r.dqkv_b = attn.qkv.bias.grad;
  r.dproj_w = attn.proj.weight.grad;
  r.dproj_b = attn.proj.bias.grad;
  return r;
}

// max |a − b| relative to max |b| (and at least 1): round-off of a sum of terms of b's size.
template <typename Scalar>
double relative_error(const Mat<Scalar>& a, const Mat<Scalar>& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  const double scale = std::max(1.0, double(b.cwiseAbs().maxCoeff()));
  return double((a - b).cwiseAbs().maxCoeff()) / scale;
}

template <typename Scalar>
void require_same(const Run<Scalar>& flash, const Run<Scalar>& ref, double tol) {
  CHECK(relative_error(flash.y, ref.y) < tol);
  CHECK(relative_error(flash.dx, ref.dx) < tol);
  CHECK(relative_error(flash.dqkv_w, ref.dqkv_w) < tol);
  CHECK(relative_error(flash.dqkv_b, ref.dqkv_b) < tol);
  CHECK(relative_error(flash.dproj_w, ref.dproj_w) < tol);
  CHECK(relative_error(flash.dproj_b, ref.dproj_b) < tol);
}

}  // namespace

TEST_CASE("Flash attention: forward and every gradient equal the reference kernel, in float and double",
          "[attention][flash]") {
  for (Index T : kTs) {
    for (auto [B, C, NH] : kWidths) {
      INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
      Rng rng(40);
      CausalSelfAttention<double> attn("attn", C, NH, rng);
      // scale 2: scores spread over several units, so the running max changes between key blocks
      // and a wrong rescaling would show
      const Mat<double> x = random_mat(C, B * T, 41, 2.0), dy = random_mat(C, B * T, 42);
      const Run<double> ref = run(attn, AttentionKernel::reference, x, dy, B, T);
      const Run<double> flash = run(attn, AttentionKernel::flash, x, dy, B, T);
      require_same(flash, ref, 1e-12);

      CausalSelfAttention<float> attn_f("attn", C, NH, rng);
      attn_f.qkv.weight.value = attn.qkv.weight.value.cast<float>();
      attn_f.qkv.bias.value = attn.qkv.bias.value.cast<float>();
      attn_f.proj.weight.value = attn.proj.weight.value.cast<float>();
      attn_f.proj.bias.value = attn.proj.bias.value.cast<float>();
      const Mat<float> xf = x.cast<float>(), dyf = dy.cast<float>();
      const Run<float> ref_f = run(attn_f, AttentionKernel::reference, xf, dyf, B, T);
      const Run<float> flash_f = run(attn_f, AttentionKernel::flash, xf, dyf, B, T);
      require_same(flash_f, ref_f, 2e-5);
      // float against double: both kernels are as far from the double result as float allows
      const Run<double> flash_fd{flash_f.y.cast<double>(),       flash_f.dx.cast<double>(),
                                 flash_f.dqkv_w.cast<double>(),  flash_f.dqkv_b.cast<double>(),
                                 flash_f.dproj_w.cast<double>(), flash_f.dproj_b.cast<double>()};
      require_same(flash_fd, flash, 2e-5);
    }
  }
}

TEST_CASE("Flash attention: the cache keeps O(T) per head, no (T, T) matrix", "[attention][flash]") {
  const Index B = 2, T = 257, C = 32, NH = 4;
  Rng rng(43);
  CausalSelfAttention<float> attn("attn", C, NH, rng);
  const Mat<float> x = random_mat(C, B * T, 44).cast<float>(), dy = random_mat(C, B * T, 45).cast<float>();
  Mat<float> y, dx;
  CausalSelfAttention<float>::Cache cache;
  attn.kernel = AttentionKernel::reference;
  attn.forward(x, B, T, y, cache);
  attn.backward(x, dy, B, T, cache, dx);
  REQUIRE(cache.att.size() == T * T * B * NH);
  attn.kernel = AttentionKernel::flash;  // the same cache: the reference's (T, T) blocks are given back
  attn.forward(x, B, T, y, cache);
  attn.backward(x, dy, B, T, cache, dx);
  REQUIRE(cache.att.size() == 0);
  REQUIRE(cache.dp.size() == 0);
  REQUIRE(cache.lse.rows() == T);
  REQUIRE(cache.lse.cols() == B * NH);
  REQUIRE(cache.delta.rows() == T);
  REQUIRE(cache.delta.cols() == B * NH);
  REQUIRE(cache.flash_scratch.rows() == kFlashKeyBlock);
  REQUIRE(cache.flash_scratch.cols() >= flash_scratch_cols(T) * num_threads());
}

TEST_CASE("Flash attention: the log-sum-exp of each query is that of its scores", "[attention][flash]") {
  const Index HS = 8, T = 130;
  const Mat<double> Q = random_mat(HS, T, 46, 3.0), K = random_mat(HS, T, 47, 3.0), V = random_mat(HS, T, 48);
  Mat<double> Y(HS, T), scratch(kFlashKeyBlock, flash_scratch_cols(T));
  Vec<double> lse(T);
  flash_attention_forward<double>(Q, K, V, Y, lse, scratch);
  for (Index i = 0; i < T; ++i) {
    INFO("query " << i);
    // direct sums, no max subtracted: the scores are small enough for exp in double
    const Vec<double> s = (K.leftCols(i + 1).transpose() * Q.col(i)) / std::sqrt(double(HS));
    const Vec<double> w = s.array().exp().matrix();
    REQUIRE(lse(i) == Approx(std::log(w.sum())).epsilon(1e-13));
    REQUIRE((Y.col(i) - V.leftCols(i + 1) * w / w.sum()).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("Flash attention: gradient check in double across block edges", "[attention][flash][gradcheck]") {
  // Small widths keep the finite differences affordable (two forwards per element).
  for (auto [B, T, C, NH] : {std::tuple<Index, Index, Index, Index>{2, 1, 4, 2}, {2, 7, 4, 2}, {1, 65, 4, 2},
                             {1, 130, 6, 3}}) {
    INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Rng rng(49);
    CausalSelfAttention<double> attn("attn", C, NH, rng);
    attn.kernel = AttentionKernel::flash;
    Mat<double> x = random_mat(C, B * T, 50, 2.0), R = random_mat(C, B * T, 51), y, dx;
    CausalSelfAttention<double>::Cache cache;
    attn.forward(x, B, T, y, cache);
    REQUIRE(cache.flash);
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

TEST_CASE("Flash attention: 1 and 2 threads give the same result, a reused cache does not reallocate",
          "[attention][flash]") {
  // B·T²·C far above kParallelMinWork, so the (b, h) pairs are shared out.
  const Index B = 2, T = 200, C = 32, NH = 4;
  REQUIRE(worth_a_team(double(B * T * T * C)));
  Rng rng(52);
  CausalSelfAttention<float> attn("attn", C, NH, rng);
  attn.kernel = AttentionKernel::flash;
  const Mat<float> x = random_mat(C, B * T, 53).cast<float>(), dy = random_mat(C, B * T, 54).cast<float>();
  const int threads = num_threads();
  set_num_threads(2);
  CausalSelfAttention<float>::Cache cache;
  Mat<float> y2, dx2, y1, dx1;
  attn.forward(x, B, T, y2, cache);
  zero_grad(attn);
  attn.backward(x, dy, B, T, cache, dx2);
  const Mat<float> dW2 = attn.qkv.weight.grad, dqkv2 = cache.dqkv;
  const float* pointers[] = {cache.qkv.data(), cache.y.data(),    cache.lse.data(),          cache.dy.data(),
                             cache.dqkv.data(), cache.delta.data(), cache.flash_scratch.data()};
  set_num_threads(1);
  zero_grad(attn);
  attn.forward(x, B, T, y1, cache);
  attn.backward(x, dy, B, T, cache, dx1);
  set_num_threads(threads);
  // the attention of each (b, h) is computed by one thread in one order: bitwise the same
  REQUIRE(cache.dqkv == dqkv2);
  // the projections around it are gemm's, whose slices may sum in another order
  REQUIRE(relative_error(y1, y2) < 1e-6);
  REQUIRE(relative_error(dx1, dx2) < 1e-6);
  REQUIRE(relative_error<float>(attn.qkv.weight.grad, dW2) < 1e-6);
  const float* after[] = {cache.qkv.data(), cache.y.data(),    cache.lse.data(),          cache.dy.data(),
                          cache.dqkv.data(), cache.delta.data(), cache.flash_scratch.data()};
  // flash_scratch was sized for 2 threads and is kept (a thread count that falls reuses it)
  for (int i = 0; i < 7; ++i) REQUIRE(pointers[i] == after[i]);
}

TEST_CASE("Flash attention: backward checks that the cache is for this B and T", "[attention][flash]") {
  const Index C = 8, NH = 2;
  Rng rng(55);
  CausalSelfAttention<double> attn("attn", C, NH, rng);
  attn.kernel = AttentionKernel::flash;
  const Mat<double> x = random_mat(C, 12, 56), dy = random_mat(C, 12, 57);
  Mat<double> y, dx;
  CausalSelfAttention<double>::Cache cache;
  attn.forward(x, 2, 6, y, cache);
  SEQGEN_THROWS_WITH(attn.backward(x, dy, 3, 4, cache, dx), ShapeError, "T=6, expected B=3 T=4");
}

}  // namespace test_flash_attention
