// Elman RNN (Elman, 1990, "Finding structure in time"), the textbook recurrent network:
//   h_t = tanh(W_hh h_{t−1} + W_ih x_t + b)          y_t = W_hy h_t + b_y   (ElmanRnn's read-out)
// Shapes: x_t (D, B)   h (H, B)   W_ih (H, D)   W_hh (H, H)   b (H, 1)   W_hy (O, H)   y_t (O, B).
// PyTorch's nn.RNNCell has two biases, b_ih + b_hh; this layer has their sum, b.
//
// Backward through one step, with dh = ∂L/∂h_t (from the output at t and from step t+1):
//   da = dh ⊙ (1 − h_t²)        ∂L/∂h_{t−1} = W_hhᵀ da
//
// RnnCell holds the parameters, advances a state by one step for inference (step) and supplies the
// per-step maths to RnnLayer = RecurrentLayer<RnnCell> (recurrent_layer.hpp), which runs it over B
// sequences of T steps for training with the big products done once for all N = B·T tokens.
// ElmanRnn is RnnLayer followed by a Linear read-out applied to every h_t.
//
// Contract: forward ASSIGNS its outputs (h_all or y), sT and the cache. backward ADDS into every
// Param::grad and ASSIGNS dx and ds0; it reads the cache of the forward with the same x, B, T and s0.
// sT may be the same object as s0, and ds0 the same as dsT, to carry a state from one chunk of a long
// sequence to the next. step() ASSIGNS the state in place.
#pragma once

#include <cmath>
#include <string>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/linear.hpp"
#include "seqgen/layers/recurrent_layer.hpp"

namespace seqgen {

template <typename Scalar>
struct RnnCell {
  static constexpr const char* kName = "RNN";
  static constexpr Index kGates = 1;
  static constexpr bool kOwnHiddenProduct = false;
  static constexpr bool kDirectHiddenPath = false;

  Param<Scalar> weight_ih;  // (H, D)
  Param<Scalar> weight_hh;  // (H, H)
  Param<Scalar> bias;       // (H, 1)
  std::string name;

  struct State {
    Mat<Scalar> h;  // (H, B)
  };
  // step()'s buffer: sized by the first call, reused after.
  struct StepWorkspace {
    Mat<Scalar> a;  // (H, B) pre-activation
  };
  // Nothing besides the layer's own: its one gate, kept by the layer, is h_t.
  struct Saved {};

  RnnCell() = default;
  // PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H).
  RnnCell(std::string name_, Index input_size, Index hidden_size, Rng& rng) : name(std::move(name_)) {
    const Index D = input_size, H = hidden_size;
    detail::check_sizes(kName, name, D, H, kGates);
    weight_ih = Param<Scalar>(join_name(name, "weight_ih"), H, D);
    weight_hh = Param<Scalar>(join_name(name, "weight_hh"), H, H);
    bias = Param<Scalar>(join_name(name, "bias"), H, 1);
    const double bound = 1.0 / std::sqrt(static_cast<double>(H));
    for_each_param([&](Param<Scalar>& p) { uniform_init(p.value, rng, bound); });
  }

  Index input_size() const { return weight_ih.value.cols(); }
  Index hidden_size() const { return weight_hh.value.cols(); }

  State zero_state(Index B) const { return {Mat<Scalar>::Zero(hidden_size(), B)}; }

  // Inference: x (D, B) advances s.h (H, B) by one step in place. Keeps no cache.
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws) const {
    const Index H = hidden_size(), B = x.cols();
    detail::check_step(*this, x, s);
    ensure_shape(ws.a, H, B);
    gemm<Scalar>(weight_ih.value, false, x, false, ws.a, false);
    gemm<Scalar>(weight_hh.value, false, s.h, false, ws.a, true);
    add_input_biases(ws.a);
    activate(ws.a);
    s.h = ws.a;
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight_ih);
    visit(weight_hh);
    visit(bias);
  }

  // f("h", s.h...): the parts of the states s....
  template <class F, class... S>
  static void for_each_part(F&& f, S&&... s) {
    f("h", s.h...);
  }

  // ---- the per-step maths RecurrentLayer runs (recurrent_layer.hpp) ----

  void begin_forward(const State&, Index, Index, Saved&) const {}

  // a += b on every column of a (H, n) matrix.
  void add_input_biases(MatRef<Scalar> a) const { add_to_columns<Scalar>(a, bias.value); }

  // a: (H, b) holds W_ih x_t + b + W_hh h_{t−1} on entry and h_t on return; h (H, b) receives h_t too.
  void forward_step(const detail::SequenceShare<Scalar>&, Index, MatRef<Scalar> a, const ConstMatRef<Scalar>&,
                    const ConstMatRef<Scalar>&, MatRef<Scalar> h, Saved&, State&) const {
    activate(a);
    h = a;
  }

  // a: h_t; dh_out: ∂L/∂h_t from the output; on entry dh holds ∂L/∂h_t from step t+1. Writes
  // da = ∂L/∂a_t and leaves dh as scratch (the layer sets it to W_hhᵀ da).
  void backward_step(const detail::SequenceShare<Scalar>&, Index, const ConstMatRef<Scalar>& a,
                     const ConstMatRef<Scalar>&, const ConstMatRef<Scalar>& dh_out, MatRef<Scalar> dh,
                     MatRef<Scalar> da, MatRef<Scalar>, Saved&, State&) const {
    activate_backward(a, dh_out, dh, da);
  }

  void add_bias_grads(const Mat<Scalar>& dA, const Mat<Scalar>&, Saved&) { add_row_sums<Scalar>(bias.grad, dA); }

  // The element-wise part of one step: a (H, B) holds the pre-activation on entry and h_t = tanh(a) on return.
  static void activate(MatRef<Scalar> a) {
    parallel_for(a.cols(), worth_a_team(a.size()), [&](Index b) { a.col(b).array() = a.col(b).array().tanh(); });
  }

  // One step back: da = (dh_out + dh) ⊙ (1 − h²), with h = h_t, dh_out = ∂L/∂h_t from the output and,
  // on entry, dh = ∂L/∂h_t from step t+1. dh is left as scratch (the caller sets it to W_hhᵀ da).
  static void activate_backward(const ConstMatRef<Scalar>& h, const ConstMatRef<Scalar>& dh_out, MatRef<Scalar> dh,
                                MatRef<Scalar> da) {
    const Scalar one(1);
    parallel_for(h.cols(), worth_a_team(h.size()), [&](Index b) {
      da.col(b).array() = (dh_out.col(b).array() + dh.col(b).array()) * (one - h.col(b).array().square());
    });
  }
};

// The Elman RNN layer over whole sequences: see RecurrentLayer.
template <typename Scalar>
using RnnLayer = RecurrentLayer<RnnCell<Scalar>>;

// The Elman network: an RnnLayer (named join_name(name, "rnn")) and a Linear read-out y_t = W_hy h_t + b_y
// (named join_name(name, "readout")) applied to all N = B·T hidden states at once.
template <typename Scalar>
struct ElmanRnn {
  using State = typename RnnLayer<Scalar>::State;
  struct Cache {
    typename RnnLayer<Scalar>::Cache rnn;
    Mat<Scalar> h_all;   // (H, N) the read-out's input
    Mat<Scalar> dh_all;  // (H, N) backward scratch
  };
  struct StepWorkspace {
    typename RnnLayer<Scalar>::StepWorkspace rnn;
  };

  RnnLayer<Scalar> rnn;
  Linear<Scalar> readout;
  std::string name;

  ElmanRnn() = default;
  ElmanRnn(std::string name_, Index input_size, Index hidden_size, Index output_size, Rng& rng)
      : rnn(join_name(name_, "rnn"), input_size, hidden_size, rng),
        readout(join_name(name_, "readout"), hidden_size, output_size, rng),
        name(std::move(name_)) {}

  Index input_size() const { return rnn.input_size(); }
  Index hidden_size() const { return rnn.hidden_size(); }
  Index output_size() const { return readout.out_features(); }
  State zero_state(Index B) const { return rnn.zero_state(B); }

  // x: (D, B*T), s0.h: (H, B)  ->  y: (O, B*T), sT.h: (H, B).
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, Mat<Scalar>& y, State& sT,
               Cache& cache) const {
    rnn.forward(x, B, T, s0, cache.h_all, sT, cache.rnn);
    readout.forward(cache.h_all, y);
  }

  // dy: ∂L/∂y (O, B*T); dsT.h: ∂L/∂sT.h or empty  ->  dx: (D, B*T), ds0.h: (H, B).
  void backward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, const ConstMatRef<Scalar>& dy,
                const State& dsT, Cache& cache, Mat<Scalar>& dx, State& ds0) {
    // The read-out adds into its gradients first: check everything the RNN will check before that.
    detail::check_sequence("ElmanRnn", name, x, input_size(), B, T);
    detail::check_state("ElmanRnn", name, "s0.", "h", s0.h, hidden_size(), B);
    detail::check_state("ElmanRnn", name, "dsT.", "h", dsT.h, hidden_size(), B, true);
    detail::check_cache("ElmanRnn", name, cache.rnn.B, cache.rnn.T, B, T);
    readout.backward(cache.h_all, dy, &cache.dh_all);
    rnn.backward(x, B, T, s0, cache.dh_all, dsT, cache.rnn, dx, ds0);
  }

  // Inference: advances s by one step and writes that step's read-out y: (O, B).
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws, Mat<Scalar>& y) const {
    rnn.step(x, s, ws.rnn);
    readout.forward(s.h, y);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    rnn.for_each_param(visit);
    readout.for_each_param(visit);
  }
};

}  // namespace seqgen
