// Recurrent language model: token embedding, a stack of L RNN, LSTM or GRU layers, and the
// softmax head, trained with truncated backpropagation through time (as Karpathy's char-rnn).
//
//   x = wte[ids]                  (C, N)    N = B·T
//   h¹ = Layer₀(x, s₀⁰)           (H, N)    each layer runs over the whole chunk of T steps
//   hˡ⁺¹ = Layer_l(hˡ, s₀ˡ)
//   loss = CrossEntropy(W_headᵀ h^L, targets)          W_head: (H, V) named lm_head.weight
//
// State carries across chunks: forward reads the state in `state` (one per layer) and leaves the
// final state of the chunk there, so consecutive batches of the same B streams continue each
// stream. Backward stops at the chunk boundary (the state is detached): no gradient flows into
// the previous chunk, and none arrives from the next. reset_state() zeroes it.
//
// Names map onto a PyTorch ModuleList of nn.RNNCell/LSTMCell/GRUCell called "layers":
// wte.weight, layers.{l}.weight_ih, layers.{l}.weight_hh, ..., lm_head.weight.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/embedding.hpp"
#include "seqgen/layers/gru.hpp"
#include "seqgen/layers/lstm.hpp"
#include "seqgen/layers/rnn.hpp"
#include "seqgen/layers/softmax_head.hpp"

namespace seqgen {

enum class CellKind { rnn, lstm, gru };

inline const char* cell_name(CellKind kind) {
  switch (kind) {
    case CellKind::rnn: return "rnn";
    case CellKind::lstm: return "lstm";
    case CellKind::gru: return "gru";
  }
  return "?";
}

struct RecurrentConfig {
  CellKind cell = CellKind::lstm;
  Index vocab_size = 65;
  Index embedding = 64;  // C, the width of the token vectors fed to the first layer
  Index hidden = 256;    // H
  Index layers = 2;      // L

  void validate() const {
    const Index kMaxDim = Index(1) << 24;
    auto in_range = [&](const char* field, Index v) {
      check<ConfigError>(v > 0 && v <= kMaxDim, "RecurrentConfig: ", field, " must be in [1, ", kMaxDim, "], got ", v);
    };
    in_range("vocab_size", vocab_size);
    in_range("embedding", embedding);
    in_range("hidden", hidden);
    in_range("layers", layers);
    // Counted in double first: with every size up to 2^24 the exact count could overflow.
    check<ConfigError>(num_params<double>() <= double(Index(1) << 34), "RecurrentConfig: ", num_params<double>(),
                       " parameters is more than this library supports (2^34)");
  }

  Index gates() const { return cell == CellKind::lstm ? 4 : cell == CellKind::gru ? 3 : 1; }
  // Both biases for LSTM and GRU (PyTorch's parametrisation), one for the Elman RNN.
  // Computed in T (Index, or double for an overflow-safe estimate).
  template <typename T = Index>
  T num_params() const {
    const T G = T(gates()), H = T(hidden), V = T(vocab_size), E = T(embedding);
    const T biases = cell == CellKind::rnn ? H : 2 * G * H;
    const T first = G * H * (E + H) + biases, later = G * H * (H + H) + biases;
    return V * E + H * V + first + T(layers - 1) * later;
  }

  // Model FLOPs of one training step per token (3 × forward): the input and recurrent GEMMs of
  // every layer, 2·G·H·(D + H), and the head, 2·H·V.
  double train_flops_per_token() const {
    double f = 2.0 * double(hidden) * double(vocab_size);
    for (Index l = 0; l < layers; ++l) {
      const double D = double(l == 0 ? embedding : hidden);
      f += 2.0 * double(gates()) * double(hidden) * (D + double(hidden));
    }
    return 3.0 * f;
  }
};

// The cell kind of each layer type.
template <template <typename> class Layer>
struct CellOf;
template <>
struct CellOf<RnnLayer> {
  static constexpr CellKind value = CellKind::rnn;
};
template <>
struct CellOf<LstmLayer> {
  static constexpr CellKind value = CellKind::lstm;
};
template <>
struct CellOf<GruLayer> {
  static constexpr CellKind value = CellKind::gru;
};

template <typename Scalar, template <typename> class Layer>
struct RecurrentLm : NamedParams<RecurrentLm<Scalar, Layer>, Scalar> {
  static constexpr CellKind kCell = CellOf<Layer>::value;
  using Config = RecurrentConfig;
  using LayerType = Layer<Scalar>;
  using LayerState = typename LayerType::State;
  using State = std::vector<LayerState>;  // one per layer
  static constexpr bool kCarriesState = true;

  RecurrentConfig config;
  Embedding<Scalar> wte;  // (C, V)
  std::vector<LayerType> layers;
  Param<Scalar> lm_head;  // (H, V)
  SoftmaxHead<Scalar> head;

  struct Activations {
    Index B = 0, T = 0;
    Mat<Scalar> embedded;                       // (C, N)
    std::vector<Mat<Scalar>> hidden;            // L of (H, N)
    std::vector<typename LayerType::Cache> layers;
    State initial;                              // the state each layer started the chunk from
    State zero_grad, grad_initial;              // dsT = 0 (detached), ds₀ (discarded)
    typename SoftmaxHead<Scalar>::Cache head;
    Mat<Scalar> grad_a, grad_b;                 // backward scratch: (H, N) gradients of hidden outputs
    Mat<Scalar> grad_embedded;                  // (C, N) gradient of embedded
  };

  RecurrentLm() = default;
  RecurrentLm(const RecurrentConfig& cfg, Rng& rng) : config(cfg) {
    config.validate();
    check<ConfigError>(cfg.cell == kCell, "RecurrentLm: the config asks for ", cell_name(cfg.cell),
                       " cells but this model type is built from ", cell_name(kCell), " layers");
    wte = Embedding<Scalar>("wte", cfg.vocab_size, cfg.embedding, rng);
    for (Index l = 0; l < cfg.layers; ++l)
      layers.emplace_back(join_name("layers", std::to_string(l)), l == 0 ? cfg.embedding : cfg.hidden, cfg.hidden,
                          rng);
    // As PyTorch's nn.Linear(H, V): U(-1/√H, 1/√H). Stored (H, V), the transpose of nn.Linear's
    // (V, H), so the fan-in is the number of rows, not the columns fan_in_uniform_init would take.
    lm_head = Param<Scalar>("lm_head.weight", cfg.hidden, cfg.vocab_size);
    uniform_init(lm_head.value, rng, 1.0 / std::sqrt(static_cast<double>(cfg.hidden)));
  }

  static std::string kind() { return cell_name(kCell); }  // the name in checkpoints
  // Any length: the state carries the past. (Callers bound T for memory, as Trainer does.)
  Index max_seq_len() const { return std::numeric_limits<Index>::max(); }
  double train_flops_per_token(Index /*T*/) const { return config.train_flops_per_token(); }

  State zero_state(Index B) const {
    State s;
    for (const auto& layer : layers) s.push_back(layer.zero_state(B));
    return s;
  }
  static void reset_state(State& state) {
    for (auto& s : state) {
      s.h.setZero();
      if constexpr (detail::HasCellState<LayerState>::value) s.c.setZero();
    }
  }

  // inputs, targets: B·T ids (b·T + t). `state` holds the state to start from and receives the
  // state after the chunk. Returns the mean loss. There is no dropout: `rng` and `training` are
  // unused (they are in the signature every model shares).
  Scalar forward(TokenSpan inputs, TokenSpan targets, Index B, Index T, State& state, Activations& act, Rng& /*rng*/,
                 bool /*training*/) {
    run(inputs, B, T, state, act);
    return head.forward(lm_head, act.hidden.back(), targets, act.head);
  }

  // Backward of the last forward, truncated at the chunk boundary. `ready`, if given, hears of
  // the gradients that are final after the head and after each layer (GradientsReady).
  void backward(TokenSpan inputs, TokenSpan targets, Index B, Index T, Activations& act,
                const GradientsReady& ready = nullptr) {
    check<ShapeError>(act.B == B && act.T == T, "RecurrentLm: backward with B=", B, " T=", T,
                      " but forward ran with B=", act.B, " T=", act.T);
    // Tensors in for_each_param order: wte's, the layers', lm_head.
    const Index embedding = count_tensors(wte), per_layer = count_tensors(layers[0]);
    head.backward(lm_head, act.hidden.back(), targets, act.head, act.grad_a);
    if (ready) ready(embedding + config.layers * per_layer);
    // grad_a holds the gradient of layer l's output. Layer 0's input gradient has C rows, the others'
    // H, so each buffer keeps one shape and no step reallocates.
    for (Index l = config.layers - 1; l >= 0; --l) {
      const Mat<Scalar>& input = l == 0 ? act.embedded : act.hidden[l - 1];
      Mat<Scalar>& grad_input = l == 0 ? act.grad_embedded : act.grad_b;
      layers[l].backward(input, B, T, act.initial[l], act.grad_a, act.zero_grad[l], act.layers[l], grad_input,
                         act.grad_initial[l]);
      std::swap(act.grad_a, act.grad_b);
      if (ready) ready(embedding + l * per_layer);
    }
    wte.backward(inputs, act.grad_embedded);
    if (ready) ready(0);
  }

  // Inference over a chunk: logits (V, N); `state` advances as in forward.
  void logits(TokenSpan inputs, Index B, Index T, State& state, Activations& act, Mat<Scalar>& out) {
    run(inputs, B, T, state, act);
    head.logits(lm_head, act.hidden.back(), out);
  }

  using NamedParams<RecurrentLm, Scalar>::for_each_param;  // the const overload
  template <class Visit>
  void for_each_param(Visit&& visit) {
    wte.for_each_param(visit);
    for (auto& layer : layers) layer.for_each_param(visit);
    visit(lm_head);
  }

 private:
  void run(TokenSpan inputs, Index B, Index T, State& state, Activations& act) {
    check<ShapeError>(B > 0 && T > 0, "RecurrentLm: B and T must be positive, got B=", B, " T=", T);
    check<ShapeError>(is_product(inputs.size, B, T), "RecurrentLm: got ", inputs.size, " input ids, expected B*T = ", B,
                      "*", T, " = ", product(B, T));
    check<ShapeError>(Index(state.size()) == config.layers, "RecurrentLm: state has ", state.size(),
                      " layers, expected ", config.layers, " (use zero_state(B))");
    for (Index l = 0; l < config.layers; ++l) {  // all of them before any layer advances its state
      check<ShapeError>(state[l].h.rows() == config.hidden && state[l].h.cols() == B, "RecurrentLm: state of layer ",
                        l, " is (", state[l].h.rows(), ", ", state[l].h.cols(), "), expected (H, B) = (",
                        config.hidden, ", ", B, ")");
      if constexpr (detail::HasCellState<LayerState>::value)
        check<ShapeError>(state[l].c.rows() == config.hidden && state[l].c.cols() == B,
                          "RecurrentLm: cell state of layer ", l, " is (", state[l].c.rows(), ", ", state[l].c.cols(),
                          "), expected (H, B) = (", config.hidden, ", ", B, ")");
    }
    prepare(act, B, T);
    wte.forward(inputs, act.embedded);
    for (Index l = 0; l < config.layers; ++l) {
      act.initial[l] = state[l];
      const Mat<Scalar>& input = l == 0 ? act.embedded : act.hidden[l - 1];
      layers[l].forward(input, B, T, act.initial[l], act.hidden[l], state[l], act.layers[l]);
    }
  }

  void prepare(Activations& act, Index B, Index T) const {
    if (act.B == B && act.T == T && Index(act.hidden.size()) == config.layers) return;
    act.B = B;
    act.T = T;
    act.hidden.resize(config.layers);
    act.layers.resize(config.layers);
    act.initial = zero_state(B);
    act.zero_grad = zero_state(B);
    act.grad_initial = zero_state(B);
  }
};

template <typename Scalar>
using RnnLm = RecurrentLm<Scalar, RnnLayer>;
template <typename Scalar>
using LstmLm = RecurrentLm<Scalar, LstmLayer>;
template <typename Scalar>
using GruLm = RecurrentLm<Scalar, GruLayer>;

}  // namespace seqgen
