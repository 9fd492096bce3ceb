// Whole-model gradient checks, configs, and overfitting a tiny batch.
#include <seqgen/models/gpt.hpp>
#include <seqgen/models/recurrent_lm.hpp>
#include <seqgen/optim/adam.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace test_models {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

std::vector<Token> random_ids(Index n, Index V, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Token> ids(n);
  for (auto& id : ids) id = Token(rng.uniform_int(std::uint64_t(V)));
  return ids;
}

// A GPT of 3 blocks, C = 8, small enough for exact comparisons of whole steps.
GptConfig tiny_gpt_config(double dropout = 0) {
  GptConfig cfg;
  cfg.vocab_size = 7;
  cfg.context = 8;
  cfg.channels = 8;
  cfg.layers = 3;
  cfg.heads = 2;
  cfg.dropout = dropout;
  return cfg;
}

}  // namespace

TEST_CASE("Gpt: whole-model gradient check, tied and untied, with a masked target", "[gpt][gradcheck]") {
  for (bool tie : {true, false}) {
    GptConfig cfg;
    cfg.vocab_size = 5;
    cfg.context = 4;
    cfg.channels = 4;
    cfg.layers = 2;
    cfg.heads = 2;
    cfg.tie_weights = tie;
    Rng rng(1);
    Gpt<double> model(cfg, rng);
    // GPT-2's 0.02 init makes the logits nearly uniform; larger weights exercise every path.
    model.for_each_param([&](Param<double>& p) { uniform_init(p.value, rng, 0.5); });
    const Index B = 2, T = 3;
    auto inputs = random_ids(B * T, 5, 2), targets = random_ids(B * T, 5, 3);
    targets[4] = SoftmaxHead<double>::kIgnore;
    Gpt<double>::Activations act;
    NoState none;
    Rng unused(0);
    model.forward(inputs, targets, B, T, none, act, unused, true);
    zero_grad(model);
    model.backward(inputs, targets, B, T, act);

    GradCheck check;
    check.add_params(model);
    seqgen_test::require_grad_ok(check.run([&] { return model.forward(inputs, targets, B, T, none, act, unused, true); }));
  }
}

TEST_CASE("Gpt: the blocks hold one set of scratch between them", "[gpt]") {
  const GptConfig cfg = tiny_gpt_config();
  Rng rng(4);
  Gpt<float> model(cfg, rng);
  const Index B = 2, T = 8;
  auto inputs = random_ids(B * T, 7, 5), targets = random_ids(B * T, 7, 6);
  Gpt<float>::Activations act;
  NoState none;
  for (int step = 0; step < 2; ++step) {
    model.forward(inputs, targets, B, T, none, act, rng, true);
    model.backward(inputs, targets, B, T, act);
    int holders = 0;
    for (const auto& c : act.blocks) {
      holders += c.norm.size() > 0;
      REQUIRE(c.mlp.h.size() == 4 * cfg.channels * B * T);  // what backward reads stays in every block
    }
    REQUIRE(holders == 1);
    REQUIRE(act.blocks[0].norm.size() == cfg.channels * B * T);  // backward ends at block 0
  }
  // The same activations for a shallower model, after a forward that left the scratch in the
  // deepest block: the same loss and gradients as fresh ones.
  model.forward(inputs, targets, B, T, none, act, rng, false);
  REQUIRE(act.scratch_at == cfg.layers - 1);
  GptConfig shallow = cfg;
  shallow.layers = 1;
  Gpt<float> small(shallow, rng);
  Gpt<float>::Activations fresh;
  zero_grad(small);
  const float loss = small.forward(inputs, targets, B, T, none, fresh, rng, false);
  small.backward(inputs, targets, B, T, fresh);
  const auto grads = seqgen_test::gradients<float>(small);
  zero_grad(small);
  REQUIRE(small.forward(inputs, targets, B, T, none, act, rng, false) == loss);
  small.backward(inputs, targets, B, T, act);
  REQUIRE(seqgen_test::gradients<float>(small) == grads);
}

TEST_CASE("Gpt: recomputing the blocks gives the same loss and gradients bit for bit, from one block cache",
          "[gpt]") {
  for (double dropout : {0.0, 0.2}) {
    for (AttentionKernel kernel : {AttentionKernel::reference, AttentionKernel::flash}) {
      const GptConfig cfg = tiny_gpt_config(dropout);
      Rng init(7);
      Gpt<float> model(cfg, init);
      for (auto& block : model.blocks) block.attn.kernel = kernel;
      const Index B = 2, T = 8;
      auto inputs = random_ids(B * T, 7, 8), targets = random_ids(B * T, 7, 9);
      NoState none;
      Gpt<float>::Activations kept, recomputed;
      recomputed.recompute = true;
      Rng rng_kept(10), rng_recomputed(10);
      for (int step = 0; step < 2; ++step) {  // the second step on caches that already hold buffers
        zero_grad(model);
        const float loss = model.forward(inputs, targets, B, T, none, kept, rng_kept, true);
        model.backward(inputs, targets, B, T, kept);
        const auto grads = seqgen_test::gradients<float>(model);
        zero_grad(model);
        REQUIRE(model.forward(inputs, targets, B, T, none, recomputed, rng_recomputed, true) == loss);
        model.backward(inputs, targets, B, T, recomputed);
        REQUIRE(seqgen_test::gradients<float>(model) == grads);
        for (Index l = 1; l < cfg.layers; ++l) REQUIRE(recomputed.blocks[l].mlp.h.size() == 0);
      }
      // Evaluation through the same activations keeps every block's cache, as without recompute;
      // the next recomputing step frees them again.
      std::vector<Mat<float>> logits(2);
      model.logits(inputs, B, T, none, recomputed, logits[0]);
      model.logits(inputs, B, T, none, kept, logits[1]);
      REQUIRE(logits[0] == logits[1]);
      REQUIRE(recomputed.blocks[1].mlp.h.size() > 0);
      model.forward(inputs, targets, B, T, none, recomputed, rng_recomputed, true);
      model.backward(inputs, targets, B, T, recomputed);
      for (Index l = 1; l < cfg.layers; ++l) REQUIRE(recomputed.blocks[l].mlp.h.size() == 0);
    }
  }
}

TEST_CASE("Gpt: config validation and counts", "[gpt][config]") {
  GptConfig cfg;
  cfg.channels = 10;
  cfg.heads = 4;
  SEQGEN_THROWS_WITH(cfg.validate(), ConfigError, "heads (4) must divide channels (10)");
  cfg = GptConfig();
  cfg.layers = 0;
  SEQGEN_THROWS_WITH(cfg.validate(), ConfigError, "layers must be in [1,");
  cfg = GptConfig();
  cfg.context = 1000000000;
  SEQGEN_THROWS_WITH(cfg.validate(), ConfigError, "context must be in");

  cfg = GptConfig();
  cfg.vocab_size = 7;
  cfg.context = 6;
  cfg.channels = 8;
  cfg.layers = 2;
  cfg.heads = 2;
  for (bool tie : {true, false}) {
    cfg.tie_weights = tie;
    Rng rng(1);
    Gpt<float> model(cfg, rng);
    REQUIRE(count_params(model) == cfg.num_params());
  }
  // Multiply-adds per token, GEMM by GEMM: qkv (3C × C), proj (C × C), fc (4C × C), proj (C × 4C),
  // Kᵀq over T keys and Σ p·v over T values (C each per key), and the head (V × C).
  // Forward = 2 FLOPs per multiply-add; a training step = forward + backward = 3 × forward.
  const double C = 8, T = 6, V = 7, L = 2;
  const double macs_per_layer = 3 * C * C + C * C + 4 * C * C + 4 * C * C + T * C + T * C;
  REQUIRE(cfg.train_flops_per_token(6) == Approx(3 * 2 * (L * macs_per_layer + V * C)));
}

TEST_CASE("Gpt: a sequence longer than the context is a clear error", "[gpt][errors]") {
  GptConfig cfg;
  cfg.vocab_size = 5;
  cfg.context = 4;
  cfg.channels = 4;
  cfg.layers = 1;
  cfg.heads = 1;
  Rng rng(1);
  Gpt<float> model(cfg, rng);
  Gpt<float>::Activations act;
  NoState none;
  std::vector<Token> ids(5, 0);
  SEQGEN_THROWS_WITH(model.forward(ids, ids, 1, 5, none, act, rng, false), ShapeError, "exceeds the context length 4");
  ids.resize(4);
  ids[2] = 9;
  SEQGEN_THROWS_WITH(model.forward(ids, ids, 1, 4, none, act, rng, false), IndexError, "token id 9");
}

template <template <typename> class Layer>
void check_recurrent_model(CellKind cell) {
  RecurrentConfig cfg;
  cfg.cell = cell;
  cfg.vocab_size = 5;
  cfg.embedding = 3;
  cfg.hidden = 4;
  cfg.layers = 2;
  Rng rng(4);
  RecurrentLm<double, Layer> model(cfg, rng);
  REQUIRE(count_params(model) == cfg.num_params());
  const Index B = 2, T = 3;
  auto in1 = random_ids(B * T, 5, 5), tg1 = random_ids(B * T, 5, 6);
  auto in2 = random_ids(B * T, 5, 7), tg2 = random_ids(B * T, 5, 8);
  typename RecurrentLm<double, Layer>::Activations act;

  // Chunk 1 leaves a non-zero state; chunk 2 starts from it. Truncated BPTT treats that carried
  // state as a constant, which is exactly what the finite differences below do.
  auto state = model.zero_state(B);
  model.forward(in1, tg1, B, T, state, act, rng, false);
  const auto carried = state;
  REQUIRE(carried[0].h.norm() > 0);

  auto s = carried;
  model.forward(in2, tg2, B, T, s, act, rng, false);
  zero_grad(model);
  model.backward(in2, tg2, B, T, act);
  GradCheck check;
  check.add_params(model);
  seqgen_test::require_grad_ok(check.run([&] {
    auto s2 = carried;
    return model.forward(in2, tg2, B, T, s2, act, rng, false);
  }));

  // Two chunks carried equal one chunk of 2T on the same streams.
  std::vector<Token> joined(B * 2 * T), joined_tg(B * 2 * T);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t) {
      joined[b * 2 * T + t] = in1[b * T + t];
      joined[b * 2 * T + T + t] = in2[b * T + t];
      joined_tg[b * 2 * T + t] = tg1[b * T + t];
      joined_tg[b * 2 * T + T + t] = tg2[b * T + t];
    }
  auto s_long = model.zero_state(B);
  typename RecurrentLm<double, Layer>::Activations act_long;
  const double long_loss = model.forward(joined, joined_tg, B, 2 * T, s_long, act_long, rng, false);
  auto s_a = model.zero_state(B);
  const double l1 = model.forward(in1, tg1, B, T, s_a, act, rng, false);
  const double l2 = model.forward(in2, tg2, B, T, s_a, act, rng, false);
  REQUIRE(long_loss == Approx((l1 + l2) / 2).epsilon(1e-12));
  REQUIRE((s_long.back().h - s_a.back().h).norm() < 1e-12);
}

TEST_CASE("RecurrentLm: whole-model gradient check with a carried state, rnn/lstm/gru", "[recurrent][gradcheck]") {
  check_recurrent_model<RnnLayer>(CellKind::rnn);
  check_recurrent_model<LstmLayer>(CellKind::lstm);
  check_recurrent_model<GruLayer>(CellKind::gru);
}

TEST_CASE("RecurrentLm: config errors", "[recurrent][config]") {
  RecurrentConfig cfg;
  cfg.hidden = 0;
  SEQGEN_THROWS_WITH(cfg.validate(), ConfigError, "hidden must be in [1,");
  cfg = RecurrentConfig();
  cfg.cell = CellKind::gru;
  Rng rng(1);
  SEQGEN_THROWS_WITH((LstmLm<float>(cfg, rng)), ConfigError, "asks for gru cells");
}

TEST_CASE("Models: huge B or T are clear errors, with no overflow in the check", "[gpt][recurrent][errors]") {
  // B·T of these wraps around to 8 in 64-bit arithmetic, the number of ids given: a check that
  // formed B·T would pass (and overflow, undefined behaviour) and the model would then run B
  // sequences it does not have.
  const Index huge_B = (Index(1) << 62) + 2;
  const std::vector<Token> ids(8, 1);
  GptConfig gcfg;
  gcfg.vocab_size = 5;
  gcfg.context = 8;
  gcfg.channels = 4;
  gcfg.layers = 1;
  gcfg.heads = 1;
  Rng rng(1);
  Gpt<float> gpt(gcfg, rng);
  Gpt<float>::Activations gact;
  NoState none;
  SEQGEN_THROWS_WITH(gpt.forward(ids, ids, huge_B, 4, none, gact, rng, false), ShapeError,
                     "Gpt: got 8 input ids, expected B*T = 4611686018427387906*4 = more than 2^63 - 1");
  SEQGEN_THROWS_WITH(gpt.forward(ids, ids, 3, 4, none, gact, rng, false), ShapeError,
                     "Gpt: got 8 input ids, expected B*T = 3*4 = 12");
  const Index max = std::numeric_limits<Index>::max();
  SEQGEN_THROWS_WITH(gpt.forward(ids, ids, max, max, none, gact, rng, false), ShapeError, "exceeds the context length");

  RecurrentConfig rcfg;
  rcfg.cell = CellKind::lstm;
  rcfg.vocab_size = 5;
  rcfg.embedding = 3;
  rcfg.hidden = 4;
  rcfg.layers = 1;
  LstmLm<float> lstm(rcfg, rng);
  LstmLm<float>::Activations ract;
  auto state = lstm.zero_state(2);
  SEQGEN_THROWS_WITH(lstm.forward(ids, ids, huge_B, 4, state, ract, rng, false), ShapeError,
                     "RecurrentLm: got 8 input ids, expected B*T = 4611686018427387906*4 = more than 2^63 - 1");
  SEQGEN_THROWS_WITH(lstm.forward(ids, ids, max, max, state, ract, rng, false), ShapeError, "expected B*T = ");
  SEQGEN_THROWS_WITH(lstm.forward(ids, ids, 2, 3, state, ract, rng, false), ShapeError,
                     "RecurrentLm: got 8 input ids, expected B*T = 2*3 = 6");
}

template <template <typename> class Layer>
void check_state_untouched_by_bad_state(CellKind cell) {
  RecurrentConfig cfg;
  cfg.cell = cell;
  cfg.vocab_size = 5;
  cfg.embedding = 3;
  cfg.hidden = 4;
  cfg.layers = 3;
  Rng rng(4);
  RecurrentLm<float, Layer> model(cfg, rng);
  typename RecurrentLm<float, Layer>::Activations act;
  const Index B = 2, T = 3;
  const auto ids = random_ids(B * T, 5, 5);
  auto state = model.zero_state(B);
  model.forward(ids, ids, B, T, state, act, rng, false);  // a non-zero state to start from
  auto bad_h = state;
  bad_h[2].h.resize(4, 3);
  const auto before_h = bad_h;
  SEQGEN_THROWS_WITH(model.forward(ids, ids, B, T, bad_h, act, rng, false), ShapeError, "state of layer 2");
  for (Index l = 0; l < cfg.layers - 1; ++l) REQUIRE(bad_h[l].h == before_h[l].h);
  if constexpr (detail::HasCellState<typename RecurrentLm<float, Layer>::LayerState>::value) {
    // the cell state of layer 1 is wrong: layer 0 must not run either
    for (auto [rows, cols] : {std::pair<Index, Index>{4, 3}, {3, 2}, {0, 0}}) {
      INFO("c of layer 1 is (" << rows << ", " << cols << ")");
      auto bad_c = state;
      bad_c[1].c.resize(rows, cols);
      const auto before = bad_c;
      SEQGEN_THROWS_WITH(model.forward(ids, ids, B, T, bad_c, act, rng, false), ShapeError, "cell state of layer 1");
      Mat<float> logits;
      SEQGEN_THROWS_WITH(model.logits(ids, B, T, bad_c, act, logits), ShapeError, "cell state of layer 1");
      for (Index l = 0; l < cfg.layers; ++l) {
        REQUIRE(bad_c[l].h == before[l].h);
        REQUIRE(bad_c[l].c.rows() == before[l].c.rows());
        REQUIRE(bad_c[l].c.cols() == before[l].c.cols());
        if (l != 1) REQUIRE(bad_c[l].c == before[l].c);
      }
    }
  }
}

TEST_CASE("RecurrentLm: a bad state of any layer throws before any layer advances", "[recurrent][errors]") {
  check_state_untouched_by_bad_state<RnnLayer>(CellKind::rnn);
  check_state_untouched_by_bad_state<LstmLayer>(CellKind::lstm);
  check_state_untouched_by_bad_state<GruLayer>(CellKind::gru);
}

TEST_CASE("RecurrentLm: lm_head (H, V) is drawn as PyTorch's nn.Linear(H, V), U(-1/sqrt(H), 1/sqrt(H))",
          "[recurrent]") {
  // H != V so that the fan-in, H, is told apart from the number of columns, V.
  RecurrentConfig cfg;
  cfg.cell = CellKind::gru;
  cfg.vocab_size = 400;
  cfg.embedding = 3;
  cfg.hidden = 16;
  cfg.layers = 1;
  Rng rng(9);
  GruLm<double> model(cfg, rng);
  REQUIRE(model.lm_head.value.rows() == 16);
  REQUIRE(model.lm_head.value.cols() == 400);
  const double bound = 1 / std::sqrt(16.0), max_abs = model.lm_head.value.cwiseAbs().maxCoeff();
  REQUIRE(max_abs <= bound);
  // 6400 uniform draws: the largest is within 1% of the bound except with probability 0.99^6400
  REQUIRE(max_abs > 0.99 * bound);
  // and they are spread over the interval: mean |w| = bound / 2
  REQUIRE(model.lm_head.value.cwiseAbs().mean() == Approx(bound / 2).epsilon(0.03));
}

// Trains on one fixed batch with AdamW; every model must memorise it.
template <typename Model, typename Step>
double overfit(Model& model, Step&& forward_backward, int steps) {
  typename AdamW<float>::Options o;
  o.lr = 1e-2;
  o.weight_decay = 0;
  o.decoupled = true;
  AdamW<float> opt(o);
  double loss = 0;
  for (int i = 0; i < steps; ++i) {
    zero_grad(model);
    loss = forward_backward();
    opt.step(model);
  }
  return loss;
}

TEST_CASE("Every model overfits one tiny batch to a loss below 0.05", "[gpt][recurrent][overfit]") {
  const Index B = 2, T = 8, V = 11;
  auto inputs = random_ids(B * T, V, 10), targets = random_ids(B * T, V, 11);
  {
    GptConfig cfg;
    cfg.vocab_size = V;
    cfg.context = T;
    cfg.channels = 32;
    cfg.layers = 2;
    cfg.heads = 2;
    Rng rng(1);
    Gpt<float> model(cfg, rng);
    Gpt<float>::Activations act;
    NoState none;
    const double loss = overfit(model, [&] {
      const float l = model.forward(inputs, targets, B, T, none, act, rng, true);
      model.backward(inputs, targets, B, T, act);
      return l;
    }, 300);
    INFO("gpt loss " << loss);
    REQUIRE(loss < 0.05);
  }
  auto recurrent = [&](auto model) {
    typename decltype(model)::Activations act;
    Rng unused(0);  // no dropout in a recurrent model
    const double loss = overfit(model, [&] {
      auto state = model.zero_state(B);
      const float l = model.forward(inputs, targets, B, T, state, act, unused, true);
      model.backward(inputs, targets, B, T, act);
      return l;
    }, 300);
    INFO(cell_name(model.config.cell) << " loss " << loss);
    REQUIRE(loss < 0.05);
  };
  RecurrentConfig cfg;
  cfg.vocab_size = V;
  cfg.embedding = 16;
  cfg.hidden = 32;
  cfg.layers = 1;
  Rng rng(2);
  cfg.cell = CellKind::rnn;
  recurrent(RnnLm<float>(cfg, rng));
  cfg.cell = CellKind::lstm;
  recurrent(LstmLm<float>(cfg, rng));
  cfg.cell = CellKind::gru;
  recurrent(GruLm<float>(cfg, rng));
}

TEST_CASE("Models: const iteration and lookup by parameter name", "[gpt][recurrent][params]") {
  GptConfig gcfg;
  gcfg.vocab_size = 7;
  gcfg.context = 4;
  gcfg.channels = 4;
  gcfg.layers = 2;
  gcfg.heads = 1;
  gcfg.tie_weights = false;
  Rng rng(1);
  Gpt<float> gpt(gcfg, rng);
  const Gpt<float>& view = gpt;

  // The const overload visits the same tensors, in the same order, as the mutable one.
  std::vector<std::string> names, const_names;
  gpt.for_each_param([&](Param<float>& p) { names.push_back(p.name); });
  view.for_each_param([&](auto& p) {
    static_assert(std::is_same_v<decltype(p), const Param<float>&>, "the const overload hands out const Params");
    const_names.push_back(p.name);
  });
  REQUIRE(names == const_names);
  REQUIRE(names.size() == 2 + 2 * 12 + 2 + 1);  // wte, wpe; 12 per block; ln_f; lm_head
  REQUIRE(view.num_tensors() == Index(names.size()));

  // Lookup returns the model's own tensor, not a copy.
  REQUIRE(view.find_param("blocks.1.attn.qkv.weight") == &gpt.blocks[1].attn.qkv.weight);
  REQUIRE(gpt.find_param("lm_head.weight") == &gpt.lm_head);
  REQUIRE(view.param("ln_f.bias").value.rows() == 4);
  gpt.param("wpe.weight").value(0, 0) = 42;
  REQUIRE(gpt.wpe.weight.value(0, 0) == 42);
  REQUIRE(view.find_param("blocks.2.attn.qkv.weight") == nullptr);
  REQUIRE(view.find_param("") == nullptr);
  SEQGEN_THROWS_WITH(view.param("blocks.0.attn.c_attn.weight"), IndexError,
                     "no parameter named 'blocks.0.attn.c_attn.weight'; the model has: wte.weight, wpe.weight, "
                     "blocks.0.ln1.weight");

  RecurrentConfig rcfg;
  rcfg.cell = CellKind::lstm;
  rcfg.vocab_size = 5;
  rcfg.embedding = 3;
  rcfg.hidden = 4;
  rcfg.layers = 2;
  const LstmLm<double> lstm(rcfg, rng);
  const Param<double>& w = lstm.param("layers.1.weight_hh");
  REQUIRE(w.value.rows() == 4 * 4);
  REQUIRE(w.value.cols() == 4);
  REQUIRE(lstm.num_tensors() == 1 + 2 * 4 + 1);
  Index scalars = 0;
  lstm.for_each_param([&](const Param<double>& p) { scalars += p.size(); });
  REQUIRE(scalars == rcfg.num_params());
}

}  // namespace test_models
