// GPT: a decoder-only Transformer language model in the GPT-2 layout (Radford et al., 2019).
//
//   x₀ = Drop(wte[ids] + wpe[t])                      (C, N)      N = B·T tokens, t < context
//   x_{l+1} = Block_l(x_l)        l = 0 … L−1         pre-LayerNorm blocks, transformer_block.hpp
//   loss = CrossEntropy(W_headᵀ LN_f(x_L), targets)    W_head = wte (tied, default) or lm_head
//
// Initialisation as GPT-2: every weight matrix and both embeddings ~ N(0, 0.02²), biases 0,
// LayerNorm gains 1, and the two projections that write into the residual stream (attn.proj and
// mlp.proj) scaled down to N(0, (0.02/√(2L))²) so the stream's variance does not grow with depth.
//
// Parameter names match nanoGPT-style PyTorch modules: wte.weight, wpe.weight,
// blocks.{l}.ln1.weight, blocks.{l}.attn.qkv.weight, …, ln_f.weight, lm_head.weight (untied only).
// The embeddings are stored (C, V) and (C, context): the transpose of PyTorch's, the same memory.
//
// The model contract (docs/architecture.md): forward fills an Activations object (sized on first
// use, reused without allocation while B and T stay the same) and returns the mean loss; backward
// ADDS into every Param::grad. A GPT carries no state from one batch to the next: its State is
// empty and every window starts afresh.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/dropout.hpp"
#include "seqgen/layers/embedding.hpp"
#include "seqgen/layers/layernorm.hpp"
#include "seqgen/layers/softmax_head.hpp"
#include "seqgen/layers/transformer_block.hpp"

namespace seqgen {

struct GptConfig {
  Index vocab_size = 65;
  Index context = 256;  // longest sequence T the position table covers
  Index channels = 256;  // C
  Index layers = 4;      // L
  Index heads = 4;       // NH
  double dropout = 0.0;
  bool tie_weights = true;  // share wte with the output head

  // Throws ConfigError naming the first bad field.
  void validate() const {
    const Index kMaxDim = Index(1) << 24;
    auto in_range = [&](const char* field, Index v) {
      check<ConfigError>(v > 0 && v <= kMaxDim, "GptConfig: ", field, " must be in [1, ", kMaxDim, "], got ", v);
    };
    in_range("vocab_size", vocab_size);
    in_range("context", context);
    in_range("channels", channels);
    in_range("layers", layers);
    in_range("heads", heads);
    check<ConfigError>(channels % heads == 0, "GptConfig: heads (", heads, ") must divide channels (", channels, ")");
    check<ConfigError>(dropout >= 0 && dropout < 1, "GptConfig: dropout must be in [0, 1), got ", dropout);
    // Counted in double first: with every size up to 2^24 the exact count could overflow.
    check<ConfigError>(num_params<double>() <= double(Index(1) << 34), "GptConfig: ", num_params<double>(),
                       " parameters is more than this library supports (2^34)");
  }

  // Number of scalar parameters, computed in T (Index, or double for an overflow-safe estimate).
  template <typename T = Index>
  T num_params() const {
    const T C = T(channels), V = T(vocab_size);
    const T block = 2 * 2 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C);
    return V * C + T(context) * C + T(layers) * block + 2 * C + (tie_weights ? 0 : V * C);
  }

  // Model FLOPs of one training step per token (forward + backward = 3 × forward), for a
  // sequence of length T: per layer 24·C² for the qkv, proj and MLP GEMMs and 4·T·C for the
  // full (unmasked) QKᵀ and PV products, plus 2·C·V for the head; multiply-add = 2 FLOPs.
  double train_flops_per_token(Index T) const {
    const double C = double(channels), V = double(vocab_size);
    return 3.0 * (double(layers) * (24.0 * C * C + 4.0 * double(T) * C) + 2.0 * C * V);
  }
};

// The State of a model that carries nothing from one batch to the next.
struct NoState {};

template <typename Scalar>
struct Gpt : NamedParams<Gpt<Scalar>, Scalar> {
  using Config = GptConfig;
  using State = NoState;
  static constexpr bool kCarriesState = false;

  GptConfig config;
  Embedding<Scalar> wte;  // (C, V)
  Embedding<Scalar> wpe;  // (C, context)
  std::vector<TransformerBlock<Scalar>> blocks;
  LayerNorm<Scalar> ln_f;
  Param<Scalar> lm_head;  // (C, V) when untied, else empty
  Dropout<Scalar> drop;
  SoftmaxHead<Scalar> head;

  // Everything one training step keeps for backward, plus backward scratch.
  struct Activations {
    Index B = 0, T = 0;
    bool training = false;  // the mode forward ran in; backward must match it
    std::vector<Token> positions;                           // (N) t of each token
    std::vector<Mat<Scalar>> residual;                      // L+1 of (C, N): x₀ … x_L
    Mat<Scalar> embedded;                                   // (C, N) before dropout, while it is active
    typename Dropout<Scalar>::Cache drop;
    std::vector<typename TransformerBlock<Scalar>::Cache> blocks;  // L (one in use when recomputing)
    Index scratch_at = 0;  // the block whose cache holds the blocks' one set of scratch
    // Set before a training forward: keep each block's input only, and run the block's forward
    // again just before its backward, on one cache the blocks share (activation checkpointing,
    // Chen et al., 2016). The per-token memory of the blocks falls from L caches to one, for one
    // more forward of L − 1 blocks per step (the last block's cache is still there). The results
    // are the same bit for bit: the recomputation repeats the same operations, and the dropout
    // masks come from the generator as each block first found it.
    bool recompute = false;
    bool recomputing = false;   // the mode the last forward ran in (recompute and training)
    std::vector<Rng> block_rng;  // recomputing: the generator before each block's forward
    typename LayerNorm<Scalar>::Cache ln_f;
    typename SoftmaxHead<Scalar>::Cache head;
    // (C, N) backward scratch. forward leaves LN_f(x_L) in grad_b, which the head's backward reads
    // before anything else writes it.
    Mat<Scalar> grad_a, grad_b;
  };

  Gpt() = default;
  Gpt(const GptConfig& cfg, Rng& rng) : config(cfg) {
    config.validate();
    const Index C = cfg.channels;
    wte = Embedding<Scalar>("wte", cfg.vocab_size, C, rng);
    wpe = Embedding<Scalar>("wpe", cfg.context, C, rng);
    for (Index l = 0; l < cfg.layers; ++l)
      blocks.emplace_back(join_name("blocks", std::to_string(l)), C, cfg.heads, rng, cfg.dropout);
    ln_f = LayerNorm<Scalar>("ln_f", C);
    if (!cfg.tie_weights) lm_head = Param<Scalar>("lm_head.weight", C, cfg.vocab_size);
    drop = Dropout<Scalar>(cfg.dropout);
    init_gpt2(rng);
  }

  static std::string kind() { return "gpt"; }  // the name in checkpoints
  State zero_state(Index /*B*/) const { return {}; }
  static void reset_state(State&) {}
  // The longest sequence forward accepts: the position table's length.
  Index max_seq_len() const { return config.context; }
  double train_flops_per_token(Index T) const { return config.train_flops_per_token(T); }

  const Param<Scalar>& head_weight() const { return config.tie_weights ? wte.weight : lm_head; }
  Param<Scalar>& head_weight() { return config.tie_weights ? wte.weight : lm_head; }

  // inputs, targets: B·T ids in the seqgen layout (b·T + t). Returns the mean loss over targets
  // (SoftmaxHead::kIgnore targets are skipped). `rng` draws the dropout masks when training.
  Scalar forward(TokenSpan inputs, TokenSpan targets, Index B, Index T, State& /*state*/, Activations& act, Rng& rng,
                 bool training) {
    embed(inputs, B, T, act, rng, training);
    act.training = training;
    act.recomputing = act.recompute && training;
    if (act.recomputing) {
      act.block_rng.resize(config.layers, rng);
      take_scratch(act, 0);
      // Caches that a forward without recompute filled (an evaluation on these activations, or
      // recompute switched on late) are freed: only block 0's is used. Nothing, once empty.
      for (Index l = 1; l < config.layers; ++l) act.blocks[l] = {};
    }
    for (Index l = 0; l < config.layers; ++l) {
      if (act.recomputing) act.block_rng[l] = rng;
      else take_scratch(act, l);
      blocks[l].forward(act.residual[l], B, T, act.residual[l + 1], block_cache(act, l), rng, training);
    }
    ln_f.forward(act.residual[config.layers], act.grad_b, act.ln_f);
    return head.forward(head_weight(), act.grad_b, targets, act.head);
  }

  // Backward of the mean loss of the last forward (same inputs, targets, B, T and act), in the
  // mode (training or not) that forward ran in. `ready`, if given, hears of the gradients that
  // are final after the head and after each block (GradientsReady, core/param.hpp).
  void backward(TokenSpan inputs, TokenSpan targets, Index B, Index T, Activations& act,
                const GradientsReady& ready = nullptr) {
    const bool training = act.training;
    check<ShapeError>(act.B == B && act.T == T, "Gpt: backward with B=", B, " T=", T, " but forward ran with B=",
                      act.B, " T=", act.T);
    // Tensors in for_each_param order: the embeddings, the blocks', ln_f's, lm_head (untied).
    const Index embeddings = count_tensors(wte) + count_tensors(wpe), per_block = count_tensors(blocks[0]);
    head.backward(head_weight(), act.grad_b, targets, act.head, act.grad_a);  // grad_b: LN_f(x_L)
    ln_f.backward(act.residual[config.layers], act.grad_a, act.ln_f, act.grad_b);
    if (ready) ready(embeddings + config.layers * per_block);  // ln_f, lm_head (wte, if tied, is not)
    for (Index l = config.layers - 1; l >= 0; --l) {
      if (!act.recomputing) {
        take_scratch(act, l);
      } else if (l < config.layers - 1) {  // the shared cache holds the last block's forward
        Rng rng = act.block_rng[l];
        blocks[l].forward(act.residual[l], B, T, act.grad_a, block_cache(act, l), rng, training);  // x_{l+1} again
      }
      blocks[l].backward(act.residual[l], act.grad_b, B, T, block_cache(act, l), act.grad_a, training);
      std::swap(act.grad_a, act.grad_b);
      if (ready) ready(embeddings + l * per_block);
    }
    // grad_b holds ∂L/∂x₀: through dropout, if active, into grad_a.
    const bool dropout = drop.active(training);
    if (dropout) drop.backward(act.grad_b, act.drop, act.grad_a, training);
    const Mat<Scalar>& d_embedded = dropout ? act.grad_a : act.grad_b;
    wte.backward(inputs, d_embedded);
    wpe.backward(act.positions, d_embedded);
    if (ready) ready(0);
  }

  // Inference: logits (V, N) for every position. Dropout off.
  void logits(TokenSpan inputs, Index B, Index T, State& /*state*/, Activations& act, Mat<Scalar>& out) {
    Rng unused(0);
    embed(inputs, B, T, act, unused, false);
    act.recomputing = false;
    for (Index l = 0; l < config.layers; ++l) {
      take_scratch(act, l);
      blocks[l].forward(act.residual[l], B, T, act.residual[l + 1], act.blocks[l], unused, false);
    }
    ln_f.forward(act.residual[config.layers], act.grad_b, act.ln_f);
    head.logits(head_weight(), act.grad_b, out);
  }

  using NamedParams<Gpt, Scalar>::for_each_param;  // the const overload
  template <class Visit>
  void for_each_param(Visit&& visit) {
    wte.for_each_param(visit);
    wpe.for_each_param(visit);
    for (auto& block : blocks) block.for_each_param(visit);
    ln_f.for_each_param(visit);
    if (!config.tie_weights) visit(lm_head);
  }

 private:
  void embed(TokenSpan inputs, Index B, Index T, Activations& act, Rng& rng, bool training) {
    check<ShapeError>(B > 0 && T > 0, "Gpt: B and T must be positive, got B=", B, " T=", T);
    check<ShapeError>(T <= config.context, "Gpt: sequence length T=", T, " exceeds the context length ",
                      config.context);
    check<ShapeError>(is_product(inputs.size, B, T), "Gpt: got ", inputs.size, " input ids, expected B*T = ", B, "*",
                      T, " = ", product(B, T));
    prepare(act, B, T);
    // Without active dropout the sum goes straight to x₀.
    const bool dropout = drop.active(training);
    Mat<Scalar>& sum = dropout ? act.embedded : act.residual[0];
    wte.forward(inputs, sum);
    const Index N = B * T;
    parallel_for(N, worth_a_team(sum.size()), [&](Index n) { sum.col(n) += wpe.weight.value.col(n % T); });
    if (dropout) drop.forward(act.embedded, act.residual[0], act.drop, rng, training);
  }

  // Block l's cache: its own, or when recomputing the one the blocks share.
  static typename TransformerBlock<Scalar>::Cache& block_cache(Activations& act, Index l) {
    return act.blocks[act.recomputing ? 0 : l];
  }

  // The blocks share one set of scratch (TransformerBlock::Cache::take_scratch): block l takes it
  // before it runs.
  static void take_scratch(Activations& act, Index l) {
    if (act.scratch_at == l) return;
    act.blocks[l].take_scratch(act.blocks[act.scratch_at]);
    act.scratch_at = l;
  }

  void prepare(Activations& act, Index B, Index T) const {
    if (act.B == B && act.T == T && Index(act.residual.size()) == config.layers + 1) return;
    act.B = B;
    act.T = T;
    act.positions.resize(B * T);
    for (Index n = 0; n < B * T; ++n) act.positions[n] = Token(n % T);
    act.residual.resize(config.layers + 1);
    act.blocks.resize(config.layers);
    if (act.scratch_at >= config.layers) act.scratch_at = 0;  // activations of a deeper model before
  }

  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  void init_gpt2(Rng& rng) {
    const double proj_std = 0.02 / std::sqrt(2.0 * double(config.layers));
    normal_init(wte.weight.value, rng, 0.02);
    normal_init(wpe.weight.value, rng, 0.02);
    for (auto& block : blocks) {
      block.for_each_param([&](Param<Scalar>& p) {
        const bool layer_norm = p.name.find(".ln") != std::string::npos;
        if (layer_norm) return;  // gain 1, bias 0
        if (ends_with(p.name, ".bias")) {
          p.value.setZero();
        } else {
          normal_init(p.value, rng, ends_with(p.name, ".proj.weight") ? proj_std : 0.02);
        }
      });
    }
    if (!config.tie_weights) normal_init(lm_head.value, rng, 0.02);
  }
};

}  // namespace seqgen
