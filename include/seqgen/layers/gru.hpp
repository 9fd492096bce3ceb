// GRU (Cho et al., 2014) with PyTorch's equations, gate order r, z, n and parameter names
// (torch.nn.GRUCell: weight_ih, weight_hh, bias_ih, bias_hh):
//   [ir; iz; in] = W_ih x_t + b_ih      [hr; hz; hn] = W_hh h_{t−1} + b_hh          (3H rows each)
//   r = σ(ir + hr)    z = σ(iz + hz)    n = tanh(in + r ⊙ hn)
//   h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
// Unlike the original paper, r multiplies W_hn h + b_hn rather than h, so hn is kept per token.
// Shapes: x_t (D, B)   h (H, B)   W_ih (3H, D)   W_hh (3H, H)   b_ih, b_hh (3H, 1).
//
// Backward through one step, with dh = ∂L/∂h_t (from the output at t and from step t+1):
//   da_n = dh ⊙ (1 − z) ⊙ (1 − n²)      da_z = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z)
//   da_r = da_n ⊙ hn ⊙ r(1 − r)
//   input side  dgi = [da_r; da_z; da_n]         (for W_ih, b_ih and x)
//   hidden side dgh = [da_r; da_z; da_n ⊙ r]     (for W_hh, b_hh)
//   ∂L/∂h_{t−1} = W_hhᵀ dgh + dh ⊙ z
//
// GruCell holds the parameters, advances a state by one step for inference (step) and supplies the
// per-step maths to GruLayer = RecurrentLayer<GruCell> (recurrent_layer.hpp), which runs it over B
// sequences of T steps for training with the big products done once for all N = B·T tokens. As r
// multiplies W_hn h_{t−1} + b_hn, W_hh h_{t−1} is kept apart from the input side (kOwnHiddenProduct):
//   forward   A = W_ih X + b_ih + [b_hr; b_hz; 0] in one GEMM; per step gh = W_hh h_{t−1} and the gates
//   backward  dW_ih += dGi Xᵀ, dx = W_ihᵀ dGi, dW_hh += dGh H_prevᵀ, and per step
//             ∂L/∂h_{t−1} = W_hhᵀ dgh added to dh ⊙ z (kDirectHiddenPath)
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
struct GruCell {
  static constexpr const char* kName = "GRU";
  static constexpr Index kGates = 3;
  static constexpr bool kOwnHiddenProduct = true;
  static constexpr bool kDirectHiddenPath = true;

  Param<Scalar> weight_ih;  // (3H, D)
  Param<Scalar> weight_hh;  // (3H, H)
  Param<Scalar> bias_ih;    // (3H, 1)
  Param<Scalar> bias_hh;    // (3H, 1)
  std::string name;

  struct State {
    Mat<Scalar> h;  // (H, B)
  };
  // step()'s buffers: sized by the first call, reused after.
  struct StepWorkspace {
    Mat<Scalar> gates;  // (3H, B)
    Mat<Scalar> gh;     // (3H, B)
    Mat<Scalar> hn;     // (H, B)
  };
  // Kept per token besides the gates (N = B·T, same layout as x).
  struct Saved {
    Mat<Scalar> hn;  // (H, N)  W_hn h_{t−1} + b_hn
  };

  GruCell() = default;
  // PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H).
  GruCell(std::string name_, Index input_size, Index hidden_size, Rng& rng) : name(std::move(name_)) {
    const Index D = input_size, H = hidden_size;
    detail::check_sizes(kName, name, D, H, kGates);
    weight_ih = Param<Scalar>(join_name(name, "weight_ih"), 3 * H, D);
    weight_hh = Param<Scalar>(join_name(name, "weight_hh"), 3 * H, H);
    bias_ih = Param<Scalar>(join_name(name, "bias_ih"), 3 * H, 1);
    bias_hh = Param<Scalar>(join_name(name, "bias_hh"), 3 * H, 1);
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
    ensure_shape(ws.gates, 3 * H, B);
    ensure_shape(ws.gh, 3 * H, B);
    ensure_shape(ws.hn, H, B);
    gemm<Scalar>(weight_ih.value, false, x, false, ws.gates, false);
    add_input_biases(ws.gates);
    gemm<Scalar>(weight_hh.value, false, s.h, false, ws.gh, false);
    gates_forward(ws.gates, ws.gh, bias_hh.value.bottomRows(H), s.h, ws.hn, s.h);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight_ih);
    visit(weight_hh);
    visit(bias_ih);
    visit(bias_hh);
  }

  // f("h", s.h...): the parts of the states s....
  template <class F, class... S>
  static void for_each_part(F&& f, S&&... s) {
    f("h", s.h...);
  }

  // ---- the per-step maths RecurrentLayer runs (recurrent_layer.hpp) ----

  void begin_forward(const State&, Index B, Index T, Saved& saved) const {
    ensure_shape(saved.hn, hidden_size(), B * T);  // the layer has checked that B*T does not overflow
  }

  // a += b_ih + [b_hr; b_hz; 0] on every column of a (3H, n) matrix: the biases that are simply added.
  // b_hn stays out, as r multiplies it.
  void add_input_biases(MatRef<Scalar> a) const {
    const Index H = hidden_size();
    parallel_for(a.cols(), worth_a_team(a.size()), [&](Index n) {
      a.col(n) += bias_ih.value.col(0);
      a.col(n).head(2 * H) += bias_hh.value.col(0).head(2 * H);
    });
  }

  // Step t of the share's sequences: see gates_forward, with gh = W_hh h_{t−1} from the layer.
  void forward_step(const detail::SequenceShare<Scalar>& share, Index t, MatRef<Scalar> a,
                    const ConstMatRef<Scalar>& gh, const ConstMatRef<Scalar>& h_prev, MatRef<Scalar> h, Saved& saved,
                    State&) const {
    gates_forward(a, gh, bias_hh.value.bottomRows(hidden_size()), h_prev, share.at(saved.hn, t), h);
  }

  // Step t back: see gates_backward; da is the input side dgi.
  void backward_step(const detail::SequenceShare<Scalar>& share, Index t, const ConstMatRef<Scalar>& a,
                     const ConstMatRef<Scalar>& h_prev, const ConstMatRef<Scalar>& dh_out, MatRef<Scalar> dh,
                     MatRef<Scalar> da, MatRef<Scalar> dgh, Saved& saved, State&) const {
    gates_backward(a, share.at(saved.hn, t), h_prev, dh_out, dh, da, dgh);
  }

  void add_bias_grads(const Mat<Scalar>& dGi, const Mat<Scalar>& dGh, Saved&) {
    add_row_sums<Scalar>(bias_ih.grad, dGi);
    add_row_sums<Scalar>(bias_hh.grad, dGh);
  }

  // The element-wise part of one step. a: (3H, B) holds W_ih x + b_ih + [b_hr; b_hz; 0] on entry and the
  // activations r, z, n on return; gh: (3H, B) = W_hh h_{t−1}; b_hn: (H, 1). Writes hn = W_hn h_{t−1} + b_hn
  // and h = h_t, both (H, B). h may be the same memory as h_prev.
  static void gates_forward(MatRef<Scalar> a, const ConstMatRef<Scalar>& gh, const ConstMatRef<Scalar>& b_hn,
                            const ConstMatRef<Scalar>& h_prev, MatRef<Scalar> hn, MatRef<Scalar> h) {
    const Index H = h.rows(), B = h.cols();
    const Scalar one(1);
    parallel_for(B, worth_a_team(3 * H * B), [&](Index b) {
      auto r = a.col(b).segment(0, H).array();
      auto z = a.col(b).segment(H, H).array();
      auto n = a.col(b).segment(2 * H, H).array();
      auto hnb = hn.col(b).array();
      r = (r + gh.col(b).segment(0, H).array()).logistic();
      z = (z + gh.col(b).segment(H, H).array()).logistic();
      hnb = gh.col(b).segment(2 * H, H).array() + b_hn.col(0).array();
      n = (n + r * hnb).tanh();
      h.col(b).array() = (one - z) * n + z * h_prev.col(b).array();
    });
  }

  // One step back (equations above). a: the activations r, z, n of step t; hn, h_prev: as in forward;
  // dh_out: ∂L/∂h_t from the output. On entry dh holds ∂L/∂h_t from step t+1. On return dgi and dgh
  // (3H, B) are the input- and hidden-side gradients and dh = dh_total ⊙ z, the direct part of
  // ∂L/∂h_{t−1} (the caller adds W_hhᵀ dgh).
  static void gates_backward(const ConstMatRef<Scalar>& a, const ConstMatRef<Scalar>& hn,
                             const ConstMatRef<Scalar>& h_prev, const ConstMatRef<Scalar>& dh_out, MatRef<Scalar> dh,
                             MatRef<Scalar> dgi, MatRef<Scalar> dgh) {
    const Index H = dh.rows(), B = dh.cols();
    const Scalar one(1);
    parallel_for(B, worth_a_team(3 * H * B), [&](Index b) {
      const auto r = a.col(b).segment(0, H).array();
      const auto z = a.col(b).segment(H, H).array();
      const auto n = a.col(b).segment(2 * H, H).array();
      auto dhb = dh.col(b).array();
      auto da_r = dgi.col(b).segment(0, H).array();
      auto da_z = dgi.col(b).segment(H, H).array();
      auto da_n = dgi.col(b).segment(2 * H, H).array();
      dhb += dh_out.col(b).array();
      da_n = dhb * (one - z) * (one - n.square());
      da_z = dhb * (h_prev.col(b).array() - n) * z * (one - z);
      da_r = da_n * hn.col(b).array() * r * (one - r);
      dgh.col(b).head(2 * H) = dgi.col(b).head(2 * H);
      dgh.col(b).segment(2 * H, H).array() = da_n * r;
      dhb *= z;
    });
  }
};

// The GRU layer over whole sequences: see RecurrentLayer.
template <typename Scalar>
using GruLayer = RecurrentLayer<GruCell<Scalar>>;

}  // namespace seqgen
