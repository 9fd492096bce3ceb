#include <seqgen/layers/transformer_block.hpp>

#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace test_transformer_block {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// LayerNorm starts at g = 1, b = 0; move them so that their gradients and their place in the
// composition are actually exercised.
void perturb_layernorms(TransformerBlock<double>& block, std::uint64_t seed) {
  block.ln1.weight.value.array() += random_mat(block.channels(), 1, seed, 0.5).array();
  block.ln1.bias.value = random_mat(block.channels(), 1, seed + 1, 0.5);
  block.ln2.weight.value.array() += random_mat(block.channels(), 1, seed + 2, 0.5).array();
  block.ln2.bias.value = random_mat(block.channels(), 1, seed + 3, 0.5);
}

// The block written as its equations, x1 = x + Drop(Attn(LN1(x))), y = x1 + Drop(Mlp(LN2(x1))),
// calling the block's parts one by one with fresh caches and a Dropout of its own.
Mat<double> compose_by_hand(const TransformerBlock<double>& block, const Mat<double>& x, Index B, Index T, Rng& rng,
                            bool training) {
  LayerNorm<double>::Cache ln_cache;
  CausalSelfAttention<double>::Cache attn_cache;
  Mlp<double>::Cache mlp_cache;
  Dropout<double>::Cache drop_cache;
  const Dropout<double> drop(block.drop.p);
  Mat<double> h, a, d;
  block.ln1.forward(x, h, ln_cache);
  block.attn.forward(h, B, T, a, attn_cache);
  drop.forward(a, d, drop_cache, rng, training);
  const Mat<double> x1 = x + d;
  block.ln2.forward(x1, h, ln_cache);
  block.mlp.forward(h, a, mlp_cache);
  drop.forward(a, d, drop_cache, rng, training);
  return x1 + d;
}

// (B, T, C, NH): the base case, T = 1, B = 1, a single head, head size 1.
const std::tuple<Index, Index, Index, Index> kBlockShapes[] = {
    {2, 3, 4, 2}, {2, 1, 4, 2}, {1, 3, 4, 2}, {2, 3, 4, 1}, {2, 3, 4, 4}};

}  // namespace

TEST_CASE("TransformerBlock: parameter names and count", "[block]") {
  Rng rng(1);
  TransformerBlock<double> block("blocks.3", 8, 2, rng);
  std::vector<std::string> names;
  block.for_each_param([&](Param<double>& p) { names.push_back(p.name); });
  const std::vector<std::string> expected = {
      "blocks.3.ln1.weight",      "blocks.3.ln1.bias",      "blocks.3.attn.qkv.weight", "blocks.3.attn.qkv.bias",
      "blocks.3.attn.proj.weight", "blocks.3.attn.proj.bias", "blocks.3.ln2.weight",      "blocks.3.ln2.bias",
      "blocks.3.mlp.fc.weight",   "blocks.3.mlp.fc.bias",   "blocks.3.mlp.proj.weight", "blocks.3.mlp.proj.bias"};
  REQUIRE(names == expected);
  // GPT-2's 12·C² + 13·C per block
  REQUIRE(count_params(block) == 12 * 64 + 13 * 8);
}

TEST_CASE("TransformerBlock: forward equals the composition of its parts", "[block]") {
  const Index B = 2, T = 4, C = 6, NH = 3;
  for (double p : {0.0, 0.25}) {
    for (bool training : {false, true}) {
      INFO("dropout " << p << (training ? " training" : " eval"));
      Rng init(2);
      TransformerBlock<double> block("blk", C, NH, init, p);
      perturb_layernorms(block, 3);
      const Mat<double> x = random_mat(C, B * T, 4, 2.0);
      Mat<double> y;
      TransformerBlock<double>::Cache cache;
      Rng rng(5);
      block.forward(x, B, T, y, cache, rng, training);
      rng.reseed(5);
      const Mat<double> expected = compose_by_hand(block, x, B, T, rng, training);
      REQUIRE((y - expected).cwiseAbs().maxCoeff() < 1e-13);
    }
  }
}

TEST_CASE("TransformerBlock: dropout is the identity in eval mode and changes training output", "[block]") {
  const Index B = 1, T = 5, C = 4, NH = 2;
  Rng init_a(6), init_b(6);
  TransformerBlock<double> plain("blk", C, NH, init_a, 0.0), dropped("blk", C, NH, init_b, 0.5);
  const Mat<double> x = random_mat(C, B * T, 7);
  Mat<double> y_plain, y_eval, y_train;
  TransformerBlock<double>::Cache cache;
  Rng rng(8);
  plain.forward(x, B, T, y_plain, cache, rng, true);
  dropped.forward(x, B, T, y_eval, cache, rng, false);
  REQUIRE(y_eval == y_plain);
  dropped.forward(x, B, T, y_train, cache, rng, true);
  REQUIRE((y_train - y_plain).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("TransformerBlock: gradient check over shapes (T = 1, B = 1, NH = 1, NH = C)", "[block][gradcheck]") {
  for (auto [B, T, C, NH] : kBlockShapes) {
    INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Rng init(9);
    TransformerBlock<double> block("blk", C, NH, init);
    perturb_layernorms(block, 10);
    Mat<double> x = random_mat(C, B * T, 11, 2.0), R = random_mat(C, B * T, 12), y, dx;
    TransformerBlock<double>::Cache cache;
    Rng rng(13);
    block.forward(x, B, T, y, cache, rng, true);
    zero_grad(block);
    block.backward(x, R, B, T, cache, dx, true);

    GradCheck check;
    check.add("x", x, dx);
    check.add_params(block);
    seqgen_test::require_grad_ok(check.run([&, B = B, T = T] {  // (C++17 lambdas cannot capture a binding)
      block.forward(x, B, T, y, cache, rng, true);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("TransformerBlock: gradient check with dropout in training, fixed masks", "[block][gradcheck]") {
  for (auto [B, T, C, NH] : {std::tuple<Index, Index, Index, Index>{2, 3, 4, 2}, {1, 1, 4, 4}}) {
    INFO("B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Rng init(14);
    TransformerBlock<double> block("blk", C, NH, init, 0.3);
    perturb_layernorms(block, 15);
    Mat<double> x = random_mat(C, B * T, 16, 2.0), R = random_mat(C, B * T, 17), y, dx;
    TransformerBlock<double>::Cache cache;
    Rng rng(20);
    block.forward(x, B, T, y, cache, rng, true);
    // dropout really drops something on each branch here
    REQUIRE((cache.drop1.mask.array() == 0).any());
    REQUIRE((cache.drop2.mask.array() == 0).any());
    zero_grad(block);
    block.backward(x, R, B, T, cache, dx, true);

    GradCheck check;
    check.add("x", x, dx);
    check.add_params(block);
    seqgen_test::require_grad_ok(check.run([&, B = B, T = T] {
      rng.reseed(20);  // the same masks as the analytic pass
      block.forward(x, B, T, y, cache, rng, true);
      return (y.array() * R.array()).sum();
    }));
  }
}

TEST_CASE("TransformerBlock: reused cache does not reallocate, backward adds", "[block]") {
  const Index B = 2, T = 3, C = 4, NH = 2;
  Rng init(19);
  TransformerBlock<double> block("blk", C, NH, init);
  Mat<double> x = random_mat(C, B * T, 20), dy = random_mat(C, B * T, 21), y, dx1, dx2;
  TransformerBlock<double>::Cache cache;
  Rng rng(22);
  block.forward(x, B, T, y, cache, rng, true);
  zero_grad(block);
  block.backward(x, dy, B, T, cache, dx1, true);
  const Mat<double> once = block.mlp.fc.weight.grad;
  const double* pointers[] = {cache.x1.data(), cache.dx1.data(), cache.dbranch.data(), cache.norm.data(),
                              cache.mlp.a.data(), cache.attn.dqkv.data()};
  block.forward(x, B, T, y, cache, rng, true);
  block.backward(x, dy, B, T, cache, dx2, true);
  const double* after[] = {cache.x1.data(), cache.dx1.data(), cache.dbranch.data(), cache.norm.data(),
                           cache.mlp.a.data(), cache.attn.dqkv.data()};
  for (int i = 0; i < 6; ++i) REQUIRE(pointers[i] == after[i]);
  REQUIRE((block.mlp.fc.weight.grad - 2 * once).norm() < 1e-12);
  REQUIRE(dx1 == dx2);
  // dx may be dy: backward reads dy only before it computes LN1's output again into dx.
  Mat<double> inout = dy;
  block.forward(x, B, T, y, cache, rng, true);
  block.backward(x, inout, B, T, cache, inout, true);
  REQUIRE(inout == dx1);
}

TEST_CASE("TransformerBlock: two blocks sharing one set of scratch give what their own caches give", "[block]") {
  const Index B = 2, T = 5, C = 8, NH = 2;
  Rng init(23);
  TransformerBlock<double> first("first", C, NH, init, 0.25), second("second", C, NH, init, 0.25);
  const Mat<double> x = random_mat(C, B * T, 24), dy = random_mat(C, B * T, 25);
  for (bool training : {false, true}) {
    // Each block on its own cache.
    TransformerBlock<double>::Cache own1, own2;
    Mat<double> h, y, dh, dx;
    Rng rng(26);
    first.forward(x, B, T, h, own1, rng, training);
    second.forward(h, B, T, y, own2, rng, training);
    zero_grad(first);
    zero_grad(second);
    second.backward(h, dy, B, T, own2, dh, training);
    first.backward(x, dh, B, T, own1, dx, training);
    const auto grads_first = seqgen_test::gradients<double>(first);
    const auto grads_second = seqgen_test::gradients<double>(second);
    // The same with the scratch handed over before each block runs, as Gpt does it.
    TransformerBlock<double>::Cache c1, c2;
    Mat<double> h2, y2, dh2, dx2;
    Rng rng2(26);
    first.forward(x, B, T, h2, c1, rng2, training);
    c2.take_scratch(c1);
    second.forward(h2, B, T, y2, c2, rng2, training);
    zero_grad(first);
    zero_grad(second);
    second.backward(h2, dy, B, T, c2, dh2, training);
    c1.take_scratch(c2);
    first.backward(x, dh2, B, T, c1, dx2, training);
    REQUIRE(y2 == y);
    REQUIRE(dx2 == dx);
    REQUIRE(seqgen_test::gradients<double>(first) == grads_first);
    REQUIRE(seqgen_test::gradients<double>(second) == grads_second);
    // The scratch is in c1 alone; c2 kept only what backward reads.
    CHECK(c2.norm.size() == 0);
    CHECK(c2.mlp.a.size() == 0);
    CHECK(c2.attn.dqkv.size() == 0);
    CHECK(c1.norm.size() == C * B * T);
    CHECK(c1.mlp.a.size() == 4 * C * B * T);
    // The branch outputs before dropout are kept only when dropout ran.
    CHECK(c2.attn_out.size() == (training ? C * B * T : 0));
  }
}

namespace {
// forward_cached over a sequence of T tokens in passes of `width` tokens (each attending over the
// keys the earlier passes cached), run by a team of `threads`; returns the outputs (C, T).
template <typename Scalar>
Mat<Scalar> forward_cached_in_passes(const TransformerBlock<Scalar>& block, const Mat<Scalar>& x, Index width,
                                     int threads) {
  const Index C = block.channels(), T = x.cols();
  typename TransformerBlock<Scalar>::Packed w;
  block.pack(w);
  Mat<Scalar> kv = Mat<Scalar>::Constant(2 * C, T, std::nan("")), y = x;
  Mat<Scalar> ln(C, width * threads), qkv(3 * C, width), att(C, width), hidden(4 * C, width), scores(T, threads);
  for (Index t0 = 0; t0 < T; t0 += width) {
    const Index N = std::min(width, T - t0);
    parallel_team_barriers(threads, [&](const Team& team) {
      const typename TransformerBlock<Scalar>::CachedScratch scratch{ln.middleCols(team.index() * width, N),
                                                                     qkv.leftCols(N), att.leftCols(N),
                                                                     hidden.leftCols(N), scores};
      block.forward_cached(w, y.middleCols(t0, N), scratch, team, [&](Index n) { return kv.leftCols(t0 + n + 1); });
    });
  }
  return y;
}
}  // namespace

TEST_CASE("TransformerBlock: forward_cached, token by token or in passes, by teams, equals forward", "[block]") {
  const Index T = 37, C = 40, NH = 4;  // 8 row panels in qkv, 10 in fc: every thread gets some
  Rng init(12);
  TransformerBlock<double> block("blk", C, NH, init);
  perturb_layernorms(block, 13);
  const Mat<double> x = random_mat(C, T, 14, 2.0);
  Mat<double> expected;
  TransformerBlock<double>::Cache cache;
  Rng rng(15);
  block.forward(x, 1, T, expected, cache, rng, false);
  TransformerBlock<float> block_f("blk", C, NH, init);
  block.for_each_param([&](Param<double>& p) {
    block_f.for_each_param([&](Param<float>& q) {
      if (q.name == p.name) q.value = p.value.cast<float>();
    });
  });
  const Mat<float> x_f = x.cast<float>();
  const bool avx2 = detail::avx2_kernel();
  for (int threads : {1, 2, 3}) {
    for (Index width : {Index(1), Index(4), Index(16), T}) {
      INFO(threads << " threads, passes of " << width << " tokens");
      CHECK((forward_cached_in_passes(block, x, width, threads) - expected).cwiseAbs().maxCoeff() < 1e-12);
      for (bool use_avx2 : {true, false}) {  // the packed copies of both float kernels
        detail::set_avx2_kernel(use_avx2);
        INFO("AVX2 kernel: " << detail::avx2_kernel());
        const Mat<float> y = forward_cached_in_passes(block_f, x_f, width, threads);
        CHECK((y.cast<double>() - expected).cwiseAbs().maxCoeff() < 2e-4);
      }
      detail::set_avx2_kernel(avx2);
    }
  }
}

TEST_CASE("TransformerBlock: float and double forward agree", "[block]") {
  const Index B = 2, T = 5, C = 8, NH = 4;
  Rng init_d(23), init_f(23);
  TransformerBlock<double> block_d("blk", C, NH, init_d);
  TransformerBlock<float> block_f("blk", C, NH, init_f);
  const Mat<double> x = random_mat(C, B * T, 24);
  Mat<double> y_d;
  Mat<float> y_f;
  TransformerBlock<double>::Cache cache_d;
  TransformerBlock<float>::Cache cache_f;
  Rng rng(25);
  block_d.forward(x, B, T, y_d, cache_d, rng, false);
  block_f.forward(x.cast<float>(), B, T, y_f, cache_f, rng, false);
  REQUIRE((y_f.cast<double>() - y_d).cwiseAbs().maxCoeff() < 1e-5);
}

TEST_CASE("TransformerBlock: clear errors for bad configs and shapes", "[block][errors]") {
  Rng rng(26);
  SEQGEN_THROWS_WITH(TransformerBlock<float>("h.0", 6, 4, rng), ConfigError,
                     "CausalSelfAttention 'h.0.attn': C=6 is not divisible by NH=4");
  SEQGEN_THROWS_WITH(TransformerBlock<float>("h.0", 4, 2, rng, 1.0), ConfigError, "Dropout: p must be in [0, 1)");

  TransformerBlock<float> block("h.1", 4, 2, rng);
  TransformerBlock<float>::Cache cache;
  Mat<float> y, dx;
  SEQGEN_THROWS_WITH(block.forward(Mat<float>::Zero(5, 6), 2, 3, y, cache, rng, false), ShapeError,
                     "TransformerBlock 'h.1': input has 5 rows, expected 4 (C)");
  SEQGEN_THROWS_WITH(block.forward(Mat<float>::Zero(4, 6), 2, 2, y, cache, rng, false), ShapeError,
                     "TransformerBlock 'h.1': input has 6 columns, expected B*T = 2*2 = 4");
  // (2^62 + 2)·4 wraps around to the 8 columns given: the check must not form B·T
  SEQGEN_THROWS_WITH(block.forward(Mat<float>::Zero(4, 8), (Index(1) << 62) + 2, 4, y, cache, rng, false), ShapeError,
                     "input has 8 columns, expected B*T = 4611686018427387906*4 = more than 2^63 - 1");
  const Mat<float> x = Mat<float>::Ones(4, 6);
  block.forward(x, 2, 3, y, cache, rng, false);
  SEQGEN_THROWS_WITH(block.backward(x, Mat<float>::Zero(4, 3), 2, 3, cache, dx, false), ShapeError,
                     "TransformerBlock 'h.1': dy is (4, 3), expected (4, 6)");
  const Mat<float> x8 = Mat<float>::Ones(4, 8);
  SEQGEN_THROWS_WITH(block.backward(x8, Mat<float>::Zero(4, 8), 2, 4, cache, dx, false), ShapeError,
                     "TransformerBlock 'h.1': cache holds 6 columns, expected 8");
}

}  // namespace test_transformer_block
