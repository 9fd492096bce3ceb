// Decoding: run a prompt, then one token at a time, with one interface for GPT and for the
// recurrent models, so that generation code is written once (as a template over the decoder).
//
//   GptDecoder          decoding state: a key/value cache per layer
//   RecurrentDecoder    decoding state: each layer's hidden (and, for LSTM, cell) state
// Both decode B independent sequences at once and offer the same members:
//   const Mat& prefill(prompts)   B prompts, one per sequence (none empty). Starts every sequence
//                                 afresh and runs each prompt in one batched pass. Returns the logits
//                                 (V, B) of the next token after each prompt.
//   const Mat& step(tokens)       B tokens, one per sequence. Appends them and returns the logits
//                                 (V, B) of the next token of each sequence.
//   logits(), position(b), reset(), batch_size(), vocab_size()
// After construction or reset() a sequence has no context, and step() may start from there: the
// token goes to position 0 (GPT) or meets the zero state (RNN). To start "from an empty prompt",
// step (or prefill) with a chosen start token.
//
// GPT: a step for sequence b at position p. x is the token's (C) column.
//   x = wte[id] + wpe[p]
//   per block:  TransformerBlock::forward_cached (LN1, qkv, attention over the cached positions
//               0 … p of sequence b, proj, residual, LN2, MLP, residual), the layers' own maths
//   logits = W_headᵀ LN_f(x)
// This is column p of the causal forward in gpt.hpp, without recomputing the past. The decoder
// owns only what is its own: the KV cache, the positions, the sliding window and the packing of B
// sequences into one pass. prefill is the same computation for many tokens at once: the token at
// position p attends over cached positions 0 … p, which the pass has just written.
//
// Threads. A pass runs as one barrier-synchronised team (parallel_team_barriers in parallel.hpp)
// of the thread count at construction, for all the blocks: each thread computes its share of the
// rows of every product, and the (token, head) pairs of attention are dealt round-robin. A step
// (one token per sequence) runs either so or on the calling thread alone, whichever measures faster
// as the steps go (TeamChoice in parallel.hpp: on a busy machine the team's barriers cost more
// than they save). Stepped from inside the caller's own parallel region, a pass runs on the calling
// thread alone.
//
// GPT past its context length. GPT learns absolute positions up to `context`, so a sequence
// cannot grow past it.
//   ContextPolicy::slide (default): when a full sequence receives a token, its cache is rebuilt from
//     its most recent context/2 tokens, re-prefilled at positions 0 … context/2 − 1, and the new token
//     goes to position context/2. The logits are those of a full forward over that window. A prompt
//     longer than the context keeps its last `context` tokens.
//   ContextPolicy::error: either case throws ShapeError and leaves the decoder unchanged.
//
// Memory and allocation. GptDecoder allocates everything in its constructor:
//   - per layer, a (2C, B·context) cache. Rows [0, C) hold keys and rows [C, 2C) hold values, that
//     is rows [C, 3C) of the qkv projection of attention.hpp as they are. Sequence b owns columns
//     b·context … b·context + context − 1.
//   - a copy of each block's four weight matrices packed for its products (PackedMatrix in
//     gemm.hpp, read front to back in one stream; 12·C²·L scalars, as much as the blocks).
//   - workspaces of max(B, min(B·context, prefill_chunk)) columns. A longer prefill runs in chunks of
//     that many tokens. This is exact, because a chunk's tokens attend over keys that the earlier
//     chunks cached.
// After that, neither step() nor prefill() allocates, except that a pass of several tokens packs
// them into each thread's GEMM buffers (gemm.hpp), which grow to the widest pass the thread has
// run: a step of one sequence allocates nothing, nor does a step that slides the window once a
// slide or prefill of that width has run.
// RecurrentDecoder::step() allocates nothing after its first call, which sizes the layers' step
// workspaces. Its prefill() runs the layers' sequence forward, which sizes their caches to the
// prompt.
//
// The decoders keep a pointer to the model: the model must outlive them. GptDecoder copies the
// block weights when it is made, so after the model's weights change (more training, a loaded
// checkpoint) make a new decoder. A RecurrentDecoder reads the weights as they are, but its state
// is stale after they change, until the next prefill() or reset().
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/models/gpt.hpp"
#include "seqgen/models/recurrent_lm.hpp"
#include "seqgen/layers/transformer_block.hpp"

namespace seqgen {

// What GptDecoder does when a sequence reaches its context length (see above).
enum class ContextPolicy { slide, error };

struct GptDecoderOptions {
  ContextPolicy policy = ContextPolicy::slide;
  Index prefill_chunk = 256;  // the most tokens per prefill pass: sets the workspaces' width

  void validate() const {
    check<ConfigError>(prefill_chunk > 0, "GptDecoderOptions: prefill_chunk must be positive, got ", prefill_chunk);
  }
};

namespace detail {

// B prompts, none empty, every id in [0, V). Checked before the decoder changes anything.
inline void check_prompts(const char* who, const std::vector<std::vector<Token>>& prompts, Index B, Index V) {
  check<ShapeError>(Index(prompts.size()) == B, who, ": got ", prompts.size(), " prompts, expected one per sequence (B = ",
                    B, ")");
  for (Index b = 0; b < B; ++b) {
    const std::vector<Token>& prompt = prompts[b];
    check<ShapeError>(!prompt.empty(), who, ": prompt ", b,
                      " is empty (to start from no context, give a start token as the prompt)");
    for (Index t = 0; t < Index(prompt.size()); ++t)
      check<IndexError>(prompt[t] >= 0 && prompt[t] < V, who, ": prompt ", b, " has token id ", prompt[t],
                        " at position ", t, ", out of range [0, ", V, ")");
  }
}

// B ids, one per sequence, in [0, V).
inline void check_step_tokens(const char* who, TokenSpan tokens, Index B, Index V) {
  check<ShapeError>(tokens.size == B, who, ": step got ", tokens.size, " tokens, expected one per sequence (B = ", B,
                    ")");
  for (Index b = 0; b < B; ++b)
    check<IndexError>(tokens[b] >= 0 && tokens[b] < V, who, ": step token for sequence ", b, " has id ", tokens[b],
                      ", out of range [0, ", V, ")");
}

inline void check_sequence_index(const char* who, Index b, Index B) {
  check<IndexError>(b >= 0 && b < B, who, ": sequence ", b, " is out of range [0, ", B, ")");
}

}  // namespace detail

template <typename Scalar>
class GptDecoder {
 public:
  GptDecoder(const Gpt<Scalar>& model, Index batch_size, GptDecoderOptions options = {})
      : model_(&model), options_(options), B_(batch_size) {
    options_.validate();
    const GptConfig& cfg = model.config;
    check<ConfigError>(B_ > 0, "GptDecoder: batch size must be positive, got B=", B_);
    check<ConfigError>(Index(model.blocks.size()) == cfg.layers && model.wte.vocab_size() == cfg.vocab_size &&
                           model.wpe.vocab_size() == cfg.context,
                       "GptDecoder: the model has ", model.blocks.size(), " blocks for ", cfg.layers,
                       " layers in its config; build it with Gpt(config, rng) or load a checkpoint");
    const Index C = cfg.channels, T = cfg.context, V = cfg.vocab_size;
    // In double first: B is not bounded by the config.
    check<ConfigError>(double(B_) * double(T) * double(2 * C) * double(cfg.layers) <= double(Index(1) << 40),
                       "GptDecoder: a KV cache for B=", B_, " sequences of ", T, " positions is too large");
    capacity_ = std::max(B_, std::min(B_ * T, options_.prefill_chunk));
    threads_ = num_threads();
    step_team_ = TeamChoice(threads_);

    kv_.assign(cfg.layers, Mat<Scalar>::Zero(2 * C, B_ * T));
    packed_weights_.resize(cfg.layers);
    for (Index l = 0; l < cfg.layers; ++l) model.blocks[l].pack(packed_weights_[l]);
    history_.assign(B_ * T, 0);
    position_.assign(B_, 0);
    ids_.assign(B_ * T, 0);
    seq_.assign(B_ * T, 0);
    pos_.assign(B_ * T, 0);
    out_.assign(B_, -1);
    x_.setZero(C, capacity_);
    ln_.setZero(C, capacity_ * threads_);
    qkv_.setZero(3 * C, capacity_);
    att_.setZero(C, capacity_);
    hid_.setZero(4 * C, capacity_);
    scores_.setZero(T, threads_);
    last_.setZero(C, B_);
    last_norm_.setZero(C, B_);
    logits_.setZero(V, B_);
  }

  Index batch_size() const { return B_; }
  Index vocab_size() const { return model_->config.vocab_size; }
  Index context() const { return model_->config.context; }
  ContextPolicy policy() const { return options_.policy; }

  // prompts: B token lists -> logits (V, B) after the last (kept) token of each prompt.
  const Mat<Scalar>& prefill(const std::vector<std::vector<Token>>& prompts) {
    detail::check_prompts("GptDecoder", prompts, B_, vocab_size());
    const Index ctx = context();
    for (Index b = 0; b < B_ && options_.policy == ContextPolicy::error; ++b)
      check<ShapeError>(Index(prompts[b].size()) <= ctx, "GptDecoder: prompt ", b, " has ", prompts[b].size(),
                        " tokens, more than the context length ", ctx, " (ContextPolicy::error)");
    packed_ = 0;
    for (Index b = 0; b < B_; ++b) {
      const std::vector<Token>& prompt = prompts[b];
      const Index T = std::min(Index(prompt.size()), ctx), first = Index(prompt.size()) - T;
      for (Index p = 0; p < T; ++p) {
        history_[b * ctx + p] = prompt[first + p];
        push(b, p, prompt[first + p]);
      }
      out_[b] = packed_ - 1;
      position_[b] = T;
    }
    run(true);
    return logits_;
  }

  // tokens: B ids, token b for sequence b -> logits (V, B) of the next token of each sequence.
  const Mat<Scalar>& step(TokenSpan tokens) {
    detail::check_step_tokens("GptDecoder", tokens, B_, vocab_size());
    const Index ctx = context();
    for (Index b = 0; b < B_ && options_.policy == ContextPolicy::error; ++b)
      check<ShapeError>(position_[b] < ctx, "GptDecoder: sequence ", b, " has filled the context of ", ctx,
                        " positions (ContextPolicy::error); call prefill() or reset() to continue");

    // Slide every full sequence: re-prefill its last ctx/2 tokens at positions 0 … ctx/2 − 1.
    const Index keep = ctx / 2;
    packed_ = 0;
    for (Index b = 0; b < B_; ++b) {
      if (position_[b] < ctx) continue;
      Token* history = &history_[b * ctx];
      std::copy(history + ctx - keep, history + ctx, history);  // keep ≤ ctx − keep: no overlap
      for (Index p = 0; p < keep; ++p) push(b, p, history[p]);
      position_[b] = keep;
    }
    if (packed_ > 0) run(false);

    for (Index b = 0; b < B_; ++b) {
      const Index p = position_[b]++;
      history_[b * ctx + p] = tokens[b];
      push(b, p, tokens[b]);
      out_[b] = b;
    }
    run(true);
    return logits_;
  }

  // The logits (V, B) returned by the last prefill() or step() (zeros before any).
  const Mat<Scalar>& logits() const { return logits_; }

  // Number of tokens in sequence b's cache: the position its next token takes.
  Index position(Index b) const {
    detail::check_sequence_index("GptDecoder", b, B_);
    return position_[b];
  }

  // Empties every sequence. Keeps all memory.
  void reset() {
    std::fill(position_.begin(), position_.end(), 0);
    logits_.setZero();
  }

  // The (2C, B·context) key/value cache of one layer (layout above). Valid up to position(b) in
  // each sequence.
  const Mat<Scalar>& kv_cache(Index layer) const {
    check<IndexError>(layer >= 0 && layer < Index(kv_.size()), "GptDecoder: layer ", layer, " is out of range [0, ",
                      kv_.size(), ")");
    return kv_[layer];
  }

 private:
  const Gpt<Scalar>* model_;
  GptDecoderOptions options_;
  Index B_ = 0;
  Index capacity_ = 0;  // workspace columns: the most tokens one pass runs
  int threads_ = 1;     // OpenMP threads at construction: the size of a pass's team
  TeamChoice step_team_{1};  // whether a pass of one token per sequence runs on threads_ or alone

  std::vector<Mat<Scalar>> kv_;  // L of (2C, B·context)
  std::vector<typename TransformerBlock<Scalar>::Packed> packed_weights_;  // (L) each block's, packed
  std::vector<Token> history_;   // (B·context) token at position p of sequence b at b·context + p
  std::vector<Index> position_;  // (B)

  // The tokens of the next pass, packed: token n is id ids_[n] at position pos_[n] of sequence seq_[n].
  // A sequence's tokens are packed in increasing position.
  Index packed_ = 0;
  std::vector<Token> ids_;
  std::vector<Index> seq_, pos_;  // (B·context)
  std::vector<Index> out_;        // (B) the packed token whose logits sequence b returns

  Mat<Scalar> x_;       // (C, capacity) residual stream
  Mat<Scalar> ln_;      // (C, capacity · threads) LayerNorm output, capacity columns per thread
  Mat<Scalar> qkv_;     // (3C, capacity)
  Mat<Scalar> att_;     // (C, capacity) attention output before proj
  Mat<Scalar> hid_;     // (4C, capacity) MLP hidden
  Mat<Scalar> scores_;  // (context, threads) one query's attention weights, per thread
  Mat<Scalar> last_, last_norm_;  // (C, B) final residual of each out_ token, and LN_f of it
  Mat<Scalar> logits_;  // (V, B)

  void push(Index b, Index p, Token id) {
    ids_[packed_] = id;
    seq_[packed_] = b;
    pos_[packed_] = p;
    ++packed_;
  }

  // Runs the packed tokens through the model, caching their keys and values. With logits, also
  // computes logits_ from the final residual of each sequence's out_ token.
  void run(bool with_logits) {
    for (Index n0 = 0; n0 < packed_; n0 += capacity_) {
      const Index N = std::min(capacity_, packed_ - n0);
      forward_chunk(n0, N);
      if (!with_logits) continue;
      for (Index b = 0; b < B_; ++b)
        if (out_[b] >= n0 && out_[b] < n0 + N) last_.col(b) = x_.col(out_[b] - n0);
    }
    packed_ = 0;
    if (!with_logits) return;
    const Gpt<Scalar>& m = *model_;
    m.ln_f.forward(last_, last_norm_);
    m.head.logits(m.head_weight(), last_norm_, logits_);
  }

  // Packed tokens n0 … n0 + N − 1 through every block; leaves their final residual in x_.
  void forward_chunk(Index n0, Index N) {
    const Gpt<Scalar>& m = *model_;
    const Index C = m.config.channels, ctx = context();
    for (Index n = 0; n < N; ++n)
      x_.col(n) = m.wte.weight.value.col(ids_[n0 + n]) + m.wpe.weight.value.col(pos_[n0 + n]);
    // A pass of one token per sequence (a step) repeats many times at one size, and its team
    // meets at 5 barriers per block: measured against the calling thread alone (TeamChoice).
    const bool step = N <= B_;
    const auto start = std::chrono::steady_clock::now();
    parallel_team_barriers(step ? step_team_.size() : threads_, [&](const Team& team) {
      const typename TransformerBlock<Scalar>::CachedScratch scratch{
          ln_.middleCols(team.index() * capacity_, N), qkv_.leftCols(N), att_.leftCols(N), hid_.leftCols(N), scores_};
      for (Index l = 0; l < m.config.layers; ++l) {
        // Token n's cache: positions 0 … pos_[n0 + n] of its sequence, in layer l.
        auto kv_of = [&](Index n) { return kv_[l].block(0, seq_[n0 + n] * ctx, 2 * C, pos_[n0 + n] + 1); };
        m.blocks[l].forward_cached(packed_weights_[l], x_.leftCols(N), scratch, team, kv_of);
      }
    });
    if (step) step_team_.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
};

template <typename Scalar, template <typename> class Layer>
class RecurrentDecoder {
 public:
  using Model = RecurrentLm<Scalar, Layer>;
  using State = typename Model::State;

  RecurrentDecoder(const Model& model, Index batch_size) : model_(&model), B_(batch_size) {
    const RecurrentConfig& cfg = model.config;
    check<ConfigError>(B_ > 0, "RecurrentDecoder: batch size must be positive, got B=", B_);
    check<ConfigError>(Index(model.layers.size()) == cfg.layers && model.wte.vocab_size() == cfg.vocab_size,
                       "RecurrentDecoder: the model has ", model.layers.size(), " layers for ", cfg.layers,
                       " in its config; build it with RecurrentLm(config, rng) or load a checkpoint");
    check<ConfigError>(double(B_) * double(cfg.hidden) <= double(Index(1) << 40), "RecurrentDecoder: a state for B=",
                       B_, " sequences is too large");
    state_ = model.zero_state(B_);
    workspaces_.resize(cfg.layers);
    position_.assign(B_, 0);
    embedded_.setZero(cfg.embedding, B_);
    logits_.setZero(cfg.vocab_size, B_);
  }

  Index batch_size() const { return B_; }
  Index vocab_size() const { return model_->config.vocab_size; }

  // prompts: B token lists -> logits (V, B) after the last token of each prompt. Prompts of equal
  // length run together: one sequence forward per distinct length.
  const Mat<Scalar>& prefill(const std::vector<std::vector<Token>>& prompts) {
    detail::check_prompts("RecurrentDecoder", prompts, B_, vocab_size());
    std::vector<Index> members;
    std::vector<bool> done(B_, false);
    for (Index b0 = 0; b0 < B_; ++b0) {
      if (done[b0]) continue;
      const Index T = Index(prompts[b0].size());
      members.clear();
      for (Index b = b0; b < B_; ++b)
        if (!done[b] && Index(prompts[b].size()) == T) {
          members.push_back(b);
          done[b] = true;
        }
      run_group(prompts, members, T);
    }
    for (Index b = 0; b < B_; ++b) position_[b] = Index(prompts[b].size());
    model_->head.logits(model_->lm_head, state_.back().h, logits_);
    return logits_;
  }

  // tokens: B ids, token b for sequence b -> logits (V, B) of the next token of each sequence.
  const Mat<Scalar>& step(TokenSpan tokens) {
    detail::check_step_tokens("RecurrentDecoder", tokens, B_, vocab_size());
    const Model& m = *model_;
    m.wte.forward(tokens, embedded_);
    for (Index l = 0; l < m.config.layers; ++l)  // layer l reads layer l − 1's new h
      m.layers[l].step(l == 0 ? embedded_ : state_[l - 1].h, state_[l], workspaces_[l]);
    m.head.logits(m.lm_head, state_.back().h, logits_);
    for (Index& p : position_) ++p;
    return logits_;
  }

  // The logits (V, B) returned by the last prefill() or step() (zeros before any).
  const Mat<Scalar>& logits() const { return logits_; }

  // Number of tokens sequence b has read since the last prefill() or reset().
  Index position(Index b) const {
    detail::check_sequence_index("RecurrentDecoder", b, B_);
    return position_[b];
  }

  // Zeroes every sequence's state. Keeps all memory.
  void reset() {
    Model::reset_state(state_);
    std::fill(position_.begin(), position_.end(), 0);
    logits_.setZero();
  }

  // Each layer's state, (H, B) per part.
  const State& state() const { return state_; }

 private:
  using LayerState = typename Model::LayerState;

  const Model* model_;
  Index B_ = 0;
  State state_;
  std::vector<typename Model::LayerType::StepWorkspace> workspaces_;
  std::vector<Index> position_;
  Mat<Scalar> embedded_;  // (C, B) step input
  Mat<Scalar> logits_;    // (V, B)
  // prefill scratch, sized by the prompts
  std::vector<Token> ids_;
  Mat<Scalar> prompt_embedded_;
  Mat<Scalar> hidden_[2];
  typename Model::LayerType::Cache cache_;

  // The G = members.size() prompts of length T as one (G, T) batch, from the zero state; their final
  // states go to columns `members` of state_.
  void run_group(const std::vector<std::vector<Token>>& prompts, const std::vector<Index>& members, Index T) {
    const Model& m = *model_;
    const Index G = Index(members.size());
    ids_.resize(G * T);
    for (Index i = 0; i < G; ++i) std::copy(prompts[members[i]].begin(), prompts[members[i]].end(), &ids_[i * T]);
    m.wte.forward(ids_, prompt_embedded_);
    State group = m.zero_state(G);
    for (Index l = 0; l < m.config.layers; ++l) {
      const Mat<Scalar>& input = l == 0 ? prompt_embedded_ : hidden_[(l - 1) % 2];
      m.layers[l].forward(input, G, T, group[l], hidden_[l % 2], group[l], cache_);  // s0 and sT may alias
      for (Index i = 0; i < G; ++i) copy_column(group[l], i, state_[l], members[i]);
    }
  }

  static void copy_column(const LayerState& from, Index i, LayerState& to, Index b) {
    to.h.col(b) = from.h.col(i);
    if constexpr (detail::HasCellState<LayerState>::value) to.c.col(b) = from.c.col(i);
  }
};

// The decoder of a model, so that generic code can write `auto decoder = make_decoder(model, B);`.
template <typename Scalar>
GptDecoder<Scalar> make_decoder(const Gpt<Scalar>& model, Index batch_size, GptDecoderOptions options = {}) {
  return GptDecoder<Scalar>(model, batch_size, options);
}
template <typename Scalar, template <typename> class Layer>
RecurrentDecoder<Scalar, Layer> make_decoder(const RecurrentLm<Scalar, Layer>& model, Index batch_size) {
  return RecurrentDecoder<Scalar, Layer>(model, batch_size);
}

}  // namespace seqgen
