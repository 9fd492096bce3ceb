// LSTM (Hochreiter & Schmidhuber, 1997; forget gate: Gers et al., 2000) with PyTorch's equations,
// gate order i, f, g, o and parameter names (torch.nn.LSTMCell: weight_ih, weight_hh, bias_ih, bias_hh):
//   a = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh = [a_i; a_f; a_g; a_o]          (4H rows)
//   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//   c_t = f ⊙ c_{t−1} + i ⊙ g        h_t = o ⊙ tanh(c_t)
// Shapes: x_t (D, B)   h, c (H, B)   W_ih (4H, D)   W_hh (4H, H)   b_ih, b_hh (4H, 1).
//
// Backward through one step, with dh = ∂L/∂h_t (from the output at t and from step t+1) and
// dc = ∂L/∂c_t (from step t+1):
//   dc  += dh ⊙ o ⊙ (1 − tanh²(c_t))
//   da_i = dc ⊙ g ⊙ i(1 − i)          da_f = dc ⊙ c_{t−1} ⊙ f(1 − f)
//   da_g = dc ⊙ i ⊙ (1 − g²)          da_o = dh ⊙ tanh(c_t) ⊙ o(1 − o)
//   ∂L/∂c_{t−1} = dc ⊙ f              ∂L/∂h_{t−1} = W_hhᵀ da
//
// LstmCell holds the parameters, advances a state by one step for inference (step) and supplies the
// per-step maths to LstmLayer = RecurrentLayer<LstmCell> (recurrent_layer.hpp), which runs it over B
// sequences of T steps for training with the big products done once for all N = B·T tokens. It keeps
// per token c_{t−1} and tanh(c_t) besides the gates.
//
// The layer contract (what forward and backward assign and add into) is RecurrentLayer's.
#pragma once

#include <cmath>
#include <string>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/recurrent_layer.hpp"

namespace seqgen {

template <typename Scalar>
struct LstmCell {
  static constexpr const char* kName = "LSTM";
  static constexpr Index kGates = 4;
  static constexpr bool kOwnHiddenProduct = false;
  static constexpr bool kDirectHiddenPath = false;

  Param<Scalar> weight_ih;  // (4H, D)
  Param<Scalar> weight_hh;  // (4H, H)
  Param<Scalar> bias_ih;    // (4H, 1)
  Param<Scalar> bias_hh;    // (4H, 1)
  std::string name;

  struct State {
    Mat<Scalar> h;  // (H, B)
    Mat<Scalar> c;  // (H, B)
  };
  // step()'s buffers: sized by the first call, reused after.
  struct StepWorkspace {
    Mat<Scalar> gates;   // (4H, B)
    Mat<Scalar> tanh_c;  // (H, B)
  };
  // Kept per token besides the gates (N = B·T, same layout as x), and backward's bias scratch.
  struct Saved {
    Mat<Scalar> c_prev;  // (H, N)  c_{t−1}, with s0.c in the t = 0 columns
    Mat<Scalar> tanh_c;  // (H, N)  tanh(c_t)
    Mat<Scalar> dbias;   // (4H, 1)
  };

  LstmCell() = default;
  // PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H).
  LstmCell(std::string name_, Index input_size, Index hidden_size, Rng& rng) : name(std::move(name_)) {
    const Index D = input_size, H = hidden_size;
    detail::check_sizes(kName, name, D, H, kGates);
    weight_ih = Param<Scalar>(join_name(name, "weight_ih"), 4 * H, D);
    weight_hh = Param<Scalar>(join_name(name, "weight_hh"), 4 * H, H);
    bias_ih = Param<Scalar>(join_name(name, "bias_ih"), 4 * H, 1);
    bias_hh = Param<Scalar>(join_name(name, "bias_hh"), 4 * H, 1);
    const double bound = 1.0 / std::sqrt(static_cast<double>(H));
    for_each_param([&](Param<Scalar>& p) { uniform_init(p.value, rng, bound); });
  }

  Index input_size() const { return weight_ih.value.cols(); }
  Index hidden_size() const { return weight_hh.value.cols(); }

  State zero_state(Index B) const {
    return {Mat<Scalar>::Zero(hidden_size(), B), Mat<Scalar>::Zero(hidden_size(), B)};
  }

  // Inference: x (D, B) advances s (h, c: (H, B)) by one step in place. Keeps no cache.
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws) const {
    const Index H = hidden_size(), B = x.cols();
    detail::check_step(*this, x, s);
    ensure_shape(ws.gates, 4 * H, B);
    ensure_shape(ws.tanh_c, H, B);
    gemm<Scalar>(weight_ih.value, false, x, false, ws.gates, false);
    gemm<Scalar>(weight_hh.value, false, s.h, false, ws.gates, true);
    add_input_biases(ws.gates);
    gates_forward(ws.gates, s.c, s.c, ws.tanh_c, s.h);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight_ih);
    visit(weight_hh);
    visit(bias_ih);
    visit(bias_hh);
  }

  // f("h", s.h...), f("c", s.c...): the parts of the states s....
  template <class F, class... S>
  static void for_each_part(F&& f, S&&... s) {
    f("h", s.h...);
    f("c", s.c...);
  }

  // ---- the per-step maths RecurrentLayer runs (recurrent_layer.hpp) ----

  void begin_forward(const State& s0, Index B, Index T, Saved& saved) const {
    const Index H = hidden_size(), N = B * T;  // the layer has checked that B*T does not overflow
    ensure_shape(saved.c_prev, H, N);
    ensure_shape(saved.tanh_c, H, N);
    time_slice(saved.c_prev, 0, B, T) = s0.c;
  }

  // a += b_ih + b_hh on every column of a (4H, n) matrix.
  void add_input_biases(MatRef<Scalar> a) const {
    parallel_for(a.cols(), worth_a_team(a.size()),
                 [&](Index n) { a.col(n) += bias_ih.value.col(0) + bias_hh.value.col(0); });
  }

  // Step t of the share's sequences. a: (4H, b) holds W_ih x_t + b_ih + b_hh + W_hh h_{t−1} on entry and
  // the activations i, f, g, o on return; h (H, b) receives h_t. c_t goes where step t+1 reads c_{t−1},
  // or into sT.c after the last step.
  void forward_step(const detail::SequenceShare<Scalar>& share, Index t, MatRef<Scalar> a, const ConstMatRef<Scalar>&,
                    const ConstMatRef<Scalar>&, MatRef<Scalar> h, Saved& saved, State& sT) const {
    TimeSlice<Scalar> c = t + 1 == share.T ? share.of(sT.c) : share.at(saved.c_prev, t + 1);
    gates_forward(a, share.at(saved.c_prev, t), c, share.at(saved.tanh_c, t), h);
  }

  // Step t back: see gates_backward, with dc the share of dstate.c.
  void backward_step(const detail::SequenceShare<Scalar>& share, Index t, const ConstMatRef<Scalar>& a,
                     const ConstMatRef<Scalar>&, const ConstMatRef<Scalar>& dh_out, MatRef<Scalar> dh,
                     MatRef<Scalar> da, MatRef<Scalar>, Saved& saved, State& dstate) const {
    gates_backward(a, share.at(saved.c_prev, t), share.at(saved.tanh_c, t), dh_out, dh, share.of(dstate.c), da);
  }

  // Both biases get the row sums of dA.
  void add_bias_grads(const Mat<Scalar>& dA, const Mat<Scalar>&, Saved& saved) {
    ensure_shape(saved.dbias, 4 * hidden_size(), 1);
    saved.dbias.setZero();
    add_row_sums<Scalar>(saved.dbias, dA);
    bias_ih.grad += saved.dbias;
    bias_hh.grad += saved.dbias;
  }

  // The element-wise part of one step. a: (4H, B) pre-activations on entry, activations i, f, g, o on
  // return. Writes c = c_t, tanh_c = tanh(c_t) and h = h_t, all (H, B). c may be the same memory as c_prev.
  static void gates_forward(MatRef<Scalar> a, const ConstMatRef<Scalar>& c_prev, MatRef<Scalar> c,
                            MatRef<Scalar> tanh_c, MatRef<Scalar> h) {
    const Index H = c.rows(), B = c.cols();
    parallel_for(B, worth_a_team(4 * H * B), [&](Index b) {
      auto i = a.col(b).segment(0, H).array();
      auto f = a.col(b).segment(H, H).array();
      auto g = a.col(b).segment(2 * H, H).array();
      auto o = a.col(b).segment(3 * H, H).array();
      i = i.logistic();
      f = f.logistic();
      g = g.tanh();
      o = o.logistic();
      c.col(b).array() = f * c_prev.col(b).array() + i * g;
      tanh_c.col(b).array() = c.col(b).array().tanh();
      h.col(b).array() = o * tanh_c.col(b).array();
    });
  }

  // One step back (equations above). a: the activations i, f, g, o of step t; dh_out: ∂L/∂h_t from the
  // output. On entry dh holds ∂L/∂h_t from step t+1 and dc holds ∂L/∂c_t. On return da = ∂L/∂a_t (4H, B)
  // and dc = ∂L/∂c_{t−1}; dh is left as scratch (the caller sets it to W_hhᵀ da).
  static void gates_backward(const ConstMatRef<Scalar>& a, const ConstMatRef<Scalar>& c_prev,
                             const ConstMatRef<Scalar>& tanh_c, const ConstMatRef<Scalar>& dh_out,
                             MatRef<Scalar> dh, MatRef<Scalar> dc, MatRef<Scalar> da) {
    const Index H = dc.rows(), B = dc.cols();
    const Scalar one(1);
    parallel_for(B, worth_a_team(4 * H * B), [&](Index b) {
      const auto i = a.col(b).segment(0, H).array();
      const auto f = a.col(b).segment(H, H).array();
      const auto g = a.col(b).segment(2 * H, H).array();
      const auto o = a.col(b).segment(3 * H, H).array();
      const auto tc = tanh_c.col(b).array();
      auto dhb = dh.col(b).array();
      auto dcb = dc.col(b).array();
      dhb += dh_out.col(b).array();
      dcb += dhb * o * (one - tc.square());
      da.col(b).segment(0, H).array() = dcb * g * i * (one - i);
      da.col(b).segment(H, H).array() = dcb * c_prev.col(b).array() * f * (one - f);
      da.col(b).segment(2 * H, H).array() = dcb * i * (one - g.square());
      da.col(b).segment(3 * H, H).array() = dhb * tc * o * (one - o);
      dcb *= f;
    });
  }
};

// The LSTM layer over whole sequences: see RecurrentLayer.
template <typename Scalar>
using LstmLayer = RecurrentLayer<LstmCell<Scalar>>;

}  // namespace seqgen
