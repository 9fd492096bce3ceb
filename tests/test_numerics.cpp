// Numerical health on extreme inputs: every softmax (the loss head's log-sum-exp, the sampler's,
// the attention layer's and the decoder's), LayerNorm and GELU stay finite on logits of ±1e4 and
// on constant rows, and give the closed-form value where there is one.
//
// A correctly shifted softmax of logits 1e4 apart is one-hot, and the cross-entropy is exactly 0 or
// the logit gap. (Eigen's vectorised exp clamps its argument at about −708 in double, so there the
// "zero" probabilities are ~2e-308 rather than 0: the tests allow 1e-300. In float they are 0.)
#include <seqgen/generate/decoder.hpp>
#include <seqgen/generate/sampler.hpp>
#include <seqgen/layers/attention.hpp>
#include <seqgen/layers/gelu.hpp>
#include <seqgen/layers/layernorm.hpp>
#include <seqgen/layers/softmax_head.hpp>
#include <seqgen/models/gpt.hpp>

#include <cmath>
#include <vector>

#include "test_util.hpp"

namespace test_numerics {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEMPLATE_TEST_CASE("Numerics: cross-entropy of logits ±1e4 is exactly 0 or the logit gap", "[numerics][softmax_head]",
                   float, double) {
  using S = TestType;
  // C = 1 and x = 1: the logits z = Wᵀ x are W's row exactly.
  SoftmaxHead<S> head;
  Param<S> w("w", 1, 3);
  w.value << S(1e4), S(0), S(-1e4);
  const Mat<S> x = Mat<S>::Ones(1, 3);
  typename SoftmaxHead<S>::Cache cache;
  // Each target alone: −log p_t = log Σ exp(z − max) − (z_t − max) = 0 − (z_t − 1e4).
  const S gaps[3] = {S(0), S(1e4), S(2e4)};
  for (Token t = 0; t < 3; ++t) {
    INFO("target " << t);
    const Mat<S> x1 = Mat<S>::Ones(1, 1);
    const std::vector<Token> target{t};
    REQUIRE(head.forward(w, x1, target, cache) == gaps[t]);
    // p is one-hot on token 0
    REQUIRE(cache.probs(0, 0) == S(1));
    REQUIRE(double(cache.probs(1, 0)) <= 1e-300);
    REQUIRE(double(cache.probs(2, 0)) <= 1e-300);
  }
  // All three at once: the mean, (0 + 1e4 + 2e4) / 3 = 1e4.
  const std::vector<Token> targets{0, 1, 2};
  REQUIRE(head.forward(w, x, targets, cache) == S(1e4));
  Mat<S> dx;
  head.backward(w, x, targets, cache, dx);
  // δ[:, n] = (p − onehot(t_n)) / 3 with p = e₀: column 0 is 0, columns 1 and 2 are (1, −1, 0)/3 and (1, 0, −1)/3.
  // dW = x δᵀ sums them: (2, −1, −1)/3.  dx = W δ: 0, 1e4/3, 2e4/3.
  REQUIRE(w.grad.allFinite());
  REQUIRE(w.grad(0, 0) == Approx(2.0 / 3).epsilon(1e-6));
  REQUIRE(w.grad(0, 1) == Approx(-1.0 / 3).epsilon(1e-6));
  REQUIRE(w.grad(0, 2) == Approx(-1.0 / 3).epsilon(1e-6));
  REQUIRE(std::abs(double(dx(0, 0))) <= 1e-290);
  REQUIRE(dx(0, 1) == Approx(1e4 / 3).epsilon(1e-6));
  REQUIRE(dx(0, 2) == Approx(2e4 / 3).epsilon(1e-6));
}

TEMPLATE_TEST_CASE("Numerics: a constant row of logits gives log V and a uniform softmax, even at ±1e4",
                   "[numerics][softmax_head]", float, double) {
  using S = TestType;
  const Index V = 7;
  for (const double level : {1e4, -1e4, 0.0}) {
    INFO("logits all " << level);
    SoftmaxHead<S> head;
    Param<S> w("w", 1, V);
    w.value.setConstant(S(level));
    const Mat<S> x = Mat<S>::Ones(1, 2);
    typename SoftmaxHead<S>::Cache cache;
    const std::vector<Token> targets{0, 6};
    const S loss = head.forward(w, x, targets, cache);
    // Every shifted logit is exactly 0: sum = V, loss = log V as the library computes it in S.
    REQUIRE(loss == std::log(S(V)));
    REQUIRE(cache.probs.allFinite());
    REQUIRE(((cache.probs.array() - S(1) / S(V)).abs() <= S(1e-7)).all());
  }
}

TEST_CASE("Numerics: the sampler's softmax picks a logit 1e4 above the rest every time", "[numerics][sampler]") {
  Vec<float> logits(4);
  logits << -1e4f, 1e4f, 0.0f, 1e4f - 2e4f;
  for (const double temperature : {1.0, 0.5, 100.0}) {
    for (const double top_p : {1.0, 0.5}) {
      INFO("temperature " << temperature << ", top_p " << top_p);
      SamplingOptions o;
      o.temperature = temperature;
      o.top_p = top_p;
      o.min_p = 0.05;
      Sampler sampler(o);
      Rng rng(5);
      // exp((−1e4 − 1e4) / 100) = exp(−200) is not 0 in double but ~1e-87: never drawn in 200 tries.
      for (int i = 0; i < 200; ++i) REQUIRE(sampler.sample(logits, rng) == 1);
    }
  }
}

TEST_CASE("Numerics: the sampler on a constant row of ±1e4 is exactly uniform", "[numerics][sampler]") {
  // Every weight is exp(0) = 1, total 4: the draw is the first i with u·4 − (i + 1) < 0, i.e. ⌊4u⌋.
  for (const float level : {1e4f, -1e4f}) {
    INFO("logits all " << level);
    const Vec<float> logits = Vec<float>::Constant(4, level);
    Sampler sampler;
    Rng rng(11), mirror(11);
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < 400; ++i) {
      const Token t = sampler.sample(logits, rng);
      REQUIRE(t == Token(std::floor(4 * mirror.uniform())));
      ++counts[t];
    }
    for (int c : counts) REQUIRE(c > 50);  // each of the four is drawn: the row is not collapsed onto one
  }
}

namespace {

// Attention with C = 2, one head (HS = 2): qkv and proj set so that, for tokens x_t = (a_t, c_t),
//   q_t = (s·a_t, 0)   k_t = (a_t, 0)   v_t = x_t   y = Y   (proj is the identity)
// Score of key j for query i: s·a_i·a_j / √2.
template <typename S>
CausalSelfAttention<S> probe_attention(S s) {
  Rng rng(1);
  CausalSelfAttention<S> attn("attn", 2, 1, rng);
  attn.qkv.weight.value.setZero();
  attn.qkv.bias.value.setZero();
  attn.qkv.weight.value(0, 0) = s;  // q
  attn.qkv.weight.value(2, 0) = 1;  // k
  attn.qkv.weight.value(4, 0) = 1;  // v = x
  attn.qkv.weight.value(5, 1) = 1;
  attn.proj.weight.value.setIdentity();
  attn.proj.bias.value.setZero();
  return attn;
}

}  // namespace

TEMPLATE_TEST_CASE("Numerics: attention scores 1e4 apart give an exactly one-hot softmax", "[numerics][attention]",
                   float, double) {
  using S = TestType;
  // a = (1, 2, 3): with s = ±1e4 the scores of a query differ by at least 1e4/√2 ≈ 7071.
  Mat<S> x(2, 3);
  x << 1, 2, 3,  //
      5, -7, 11;
  for (const S s : {S(1e4), S(-1e4)}) {
    INFO("s = " << s);
    auto attn = probe_attention<S>(s);
    typename CausalSelfAttention<S>::Cache cache;
    Mat<S> y;
    attn.forward(x, 1, 3, y, cache);
    REQUIRE(y.allFinite());
    // s > 0: each query attends to the largest a_j among j ≤ i, itself; s < 0: to the smallest, token 0.
    for (Index i = 0; i < 3; ++i) {
      const Index j = s > 0 ? i : 0;
      REQUIRE(y(0, i) == x(0, j));
      REQUIRE(y(1, i) == x(1, j));
    }
    Mat<S> dx;
    attn.backward(x, Mat<S>::Ones(2, 3), 1, 3, cache, dx);
    REQUIRE(dx.allFinite());
    REQUIRE(attn.qkv.weight.grad.allFinite());
    REQUIRE(attn.proj.weight.grad.allFinite());
  }
}

TEMPLATE_TEST_CASE("Numerics: equal large attention scores give an exactly uniform average", "[numerics][attention]",
                   float, double) {
  using S = TestType;
  // a_t = 1 for every token: every score is s/√2 ≈ 7071 for s = 1e4, so P is uniform over j ≤ i and
  // y_i is the mean of x_0..x_i.
  Mat<S> x(2, 3);
  x << 1, 1, 1,  //
      6, -3, 12;
  auto attn = probe_attention<S>(S(1e4));
  typename CausalSelfAttention<S>::Cache cache;
  Mat<S> y;
  attn.forward(x, 1, 3, y, cache);
  REQUIRE(y.allFinite());
  const double expected[3] = {6, 1.5, 5};
  for (Index i = 0; i < 3; ++i) {
    REQUIRE(y(0, i) == Approx(1.0).epsilon(1e-6));
    REQUIRE(y(1, i) == Approx(expected[i]).epsilon(1e-6));
  }
}

TEST_CASE("Numerics: the decoder's attention softmax stays finite and matches the full forward at huge scores",
          "[numerics][decoder]") {
  GptConfig cfg;
  cfg.vocab_size = 9;
  cfg.context = 12;
  cfg.channels = 8;
  cfg.layers = 1;
  cfg.heads = 2;
  Rng rng(3);
  Gpt<double> model(cfg, rng);
  Rng init(4);
  model.for_each_param([&](Param<double>& p) { uniform_init(p.value, init, 0.5); });
  // Q rows × 3e3: the normalised inputs are O(1), so the scores of a query spread over thousands.
  model.blocks[0].attn.qkv.weight.value.topRows(cfg.channels) *= 3e3;
  const std::vector<Token> tokens = {1, 4, 4, 0, 8, 2, 7, 3};
  typename Gpt<double>::Activations act;
  NoState none;
  Mat<double> full;
  model.logits(tokens, 1, Index(tokens.size()), none, act, full);
  REQUIRE(full.allFinite());
  // The scores are extreme: queries after the first (which sees only itself) have exactly one-hot
  // softmax columns.
  const Mat<double>& att = act.blocks[0].attn.att;  // (T, T·NH)
  const Index T = Index(tokens.size());
  int one_hot = 0;
  for (Index col = 0; col < att.cols(); ++col) one_hot += col % T > 0 && att.col(col).maxCoeff() == 1.0;
  INFO(one_hot << " one-hot columns");
  REQUIRE(one_hot >= 4);

  auto decoder = make_decoder(static_cast<const Gpt<double>&>(model), 1);
  const auto& first = decoder.prefill({std::vector<Token>(tokens.begin(), tokens.begin() + 3)});
  REQUIRE(first.allFinite());
  REQUIRE((first.col(0) - full.col(2)).cwiseAbs().maxCoeff() < 1e-8 * std::max(1.0, full.cwiseAbs().maxCoeff()));
  for (std::size_t k = 3; k < tokens.size(); ++k) {
    const auto& logits = decoder.step(TokenSpan(&tokens[k], 1));
    INFO("position " << k);
    REQUIRE(logits.allFinite());
    REQUIRE((logits.col(0) - full.col(Index(k))).cwiseAbs().maxCoeff() <
            1e-8 * std::max(1.0, full.cwiseAbs().maxCoeff()));
  }
}

TEMPLATE_TEST_CASE("Numerics: LayerNorm of a constant row is exactly its bias, also at ±1e4", "[numerics][layernorm]",
                   float, double) {
  using S = TestType;
  const Index C = 16;
  LayerNorm<S> ln("ln", C);
  ln.weight.value = random_mat<S>(C, 1, 1, 2.0);
  ln.bias.value = random_mat<S>(C, 1, 2, 2.0);
  Mat<S> x(C, 3);
  x.col(0).setConstant(S(1e4));
  x.col(1).setConstant(S(-1e4));
  x.col(2).setConstant(S(0.375));  // exact in binary: the mean is exact whatever the summation order
  Mat<S> y, dx;
  typename LayerNorm<S>::Cache cache;
  ln.forward(x, y, cache);
  for (Index n = 0; n < 3; ++n) REQUIRE(y.col(n) == ln.bias.value.col(0));
  // x̂ = 0, rstd = 1/√eps: dx = rstd (g⊙dy − mean(g⊙dy)), finite.
  const Mat<S> dy = random_mat<S>(C, 3, 3);
  ln.backward(x, dy, cache, dx);
  REQUIRE(dx.allFinite());
  const double rstd = 1 / std::sqrt(LayerNorm<S>::kEps);
  for (Index n = 0; n < 3; ++n) {
    const Mat<double> gdy = (ln.weight.value.col(0).array() * dy.col(n).array()).matrix().template cast<double>();
    for (Index c = 0; c < C; ++c)
      REQUIRE(double(dx(c, n)) == Approx(rstd * (gdy(c, 0) - gdy.mean())).epsilon(1e-4).margin(1e-3));
  }
  // Alternating ±1e4: mean 0, σ = 1e4, x̂ = ±1 (eps is negligible): y = ±g + b.
  Mat<S> alt(C, 1);
  for (Index c = 0; c < C; ++c) alt(c, 0) = c % 2 ? S(1e4) : S(-1e4);
  ln.forward(alt, y, cache);
  for (Index c = 0; c < C; ++c)
    REQUIRE(double(y(c, 0)) ==
            Approx(double((c % 2 ? 1 : -1) * ln.weight.value(c, 0) + ln.bias.value(c, 0))).epsilon(1e-5).margin(1e-5));
}

TEMPLATE_TEST_CASE("Numerics: GELU on rows of ±1e4 is x and 0, its gradient 1 and 0", "[numerics][gelu]", float,
                   double) {
  using S = TestType;
  // Long columns (300 rows, 4 × 40 of them) take the vectorised path and the chunked backward, and
  // are enough work for the threaded loop.
  Mat<S> x(300, 160), y, dx;
  for (Index n = 0; n < 160; n += 4) {
    x.col(n).setConstant(S(1e4));
    x.col(n + 1).setConstant(S(-1e4));
    x.col(n + 2).setConstant(S(1e30));  // x³ overflows to inf in float; tanh saturates first
    x.col(n + 3).setConstant(S(-1e30));
  }
  Gelu<S>().forward(x, y);
  Gelu<S>().backward(x, Mat<S>::Ones(300, 160), dx);
  REQUIRE(y.allFinite());
  REQUIRE(dx.allFinite());
  for (Index n = 0; n < 160; n += 4) {
    REQUIRE(y.col(n) == x.col(n));
    REQUIRE((y.col(n + 1).array() == S(0)).all());
    REQUIRE(y.col(n + 2) == x.col(n + 2));
    REQUIRE((y.col(n + 3).array() == S(0)).all());
    REQUIRE((dx.col(n).array() == S(1)).all());
    REQUIRE((dx.col(n + 1).array() == S(0)).all());
    REQUIRE((dx.col(n + 2).array() == S(1)).all());
    REQUIRE((dx.col(n + 3).array() == S(0)).all());
  }
}

}  // namespace test_numerics
