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
// GruCell holds the parameters and advances a state by one step for inference (step). GruLayer runs
// the cell over B sequences of T steps for training, doing the big products once for all N = B·T tokens:
//   forward   A = W_ih X + b_ih + [b_hr; b_hz; 0] in one GEMM; per step only W_hh h_{t−1} and the gates
//   backward  per step, t = T−1 … 0: the gates backward and dh_{t−1}; then one GEMM each for
//             dW_ih += dGi Xᵀ, dx = W_ihᵀ dGi and dW_hh += dGh H_prevᵀ (H_prev: h_{t−1} of every token)
// The per-step loops pack W_hh (or W_hhᵀ) once and share the B sequences out among the threads, each
// running every step on its own columns (detail::for_sequence_shares).
// A layer call with T = 1 is one training step of the cell.
//
// Contract: GruLayer::forward ASSIGNS h_all, sT and the cache. backward ADDS into every Param::grad and
// ASSIGNS dx and ds0; it reads the cache of the forward with the same x, B, T and s0. sT may be the same
// object as s0, and ds0 the same as dsT, to carry a state from one chunk of a long sequence to the next.
#pragma once

#include <cmath>
#include <string>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/recurrent_common.hpp"

namespace seqgen {

template <typename Scalar>
struct GruCell {
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

  GruCell() = default;
  // PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H).
  GruCell(std::string name_, Index input_size, Index hidden_size, Rng& rng) : name(std::move(name_)) {
    const Index D = input_size, H = hidden_size;
    detail::check_sizes("GRU", name, D, H);
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
    check<ShapeError>(x.rows() == input_size(), "GRU '", name, "': input has ", x.rows(), " rows, expected ",
                      input_size(), " (input_size)");
    detail::check_state("GRU", name, "state h", s.h, H, B);
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

  // a += b_ih + [b_hr; b_hz; 0] on every column of a (3H, n) matrix: the biases that are simply added.
  // b_hn stays out, as r multiplies it.
  void add_input_biases(MatRef<Scalar> a) const {
    const Index H = hidden_size();
    parallel_for(a.cols(), a.size() >= kParallelMinWork, [&](Index n) {
      a.col(n) += bias_ih.value.col(0);
      a.col(n).head(2 * H) += bias_hh.value.col(0).head(2 * H);
    });
  }

  // The element-wise part of one step. a: (3H, B) holds W_ih x + b_ih + [b_hr; b_hz; 0] on entry and the
  // activations r, z, n on return; gh: (3H, B) = W_hh h_{t−1}; b_hn: (H, 1). Writes hn = W_hn h_{t−1} + b_hn
  // and h = h_t, both (H, B). h may be the same memory as h_prev.
  static void gates_forward(MatRef<Scalar> a, const ConstMatRef<Scalar>& gh, const ConstMatRef<Scalar>& b_hn,
                            const ConstMatRef<Scalar>& h_prev, MatRef<Scalar> hn, MatRef<Scalar> h) {
    const Index H = h.rows(), B = h.cols();
    const Scalar one(1);
    parallel_for(B, 3 * H * B >= kParallelMinWork, [&](Index b) {
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
    parallel_for(B, 3 * H * B >= kParallelMinWork, [&](Index b) {
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

template <typename Scalar>
struct GruLayer {
  using Cell = GruCell<Scalar>;
  using State = typename Cell::State;
  using StepWorkspace = typename Cell::StepWorkspace;

  // What backward reads, filled by forward, then scratch of both passes. N = B·T, same layout as x.
  struct Cache {
    Index B = 0, T = 0;  // of the forward that filled it
    Mat<Scalar> gates;   // (3H, N) r, z, n
    Mat<Scalar> hn;      // (H, N)  W_hn h_{t−1} + b_hn
    Mat<Scalar> h_prev;  // (H, N)  h_{t−1}, with s0.h in the t = 0 columns
    Mat<Scalar> gh;      // (3H, B) forward scratch: W_hh h_{t−1}
    Mat<Scalar> dgi;     // (3H, N) input-side gradients
    Mat<Scalar> dgh;     // (3H, N) hidden-side gradients
    Mat<Scalar> dh;      // (H, B)  carried from step t+1 to step t
    PackedMatrix<Scalar> w_hh;  // W_hh packed for the forward's steps, W_hhᵀ for the backward's
  };

  Cell cell;

  GruLayer() = default;
  GruLayer(std::string name, Index input_size, Index hidden_size, Rng& rng)
      : cell(std::move(name), input_size, hidden_size, rng) {}

  const std::string& name() const { return cell.name; }
  Index input_size() const { return cell.input_size(); }
  Index hidden_size() const { return cell.hidden_size(); }
  State zero_state(Index B) const { return cell.zero_state(B); }

  // x: (D, B*T), s0.h: (H, B)  ->  h_all: (H, B*T), the final state sT.h: (H, B).
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, Mat<Scalar>& h_all, State& sT,
               Cache& cache) const {
    const Index H = hidden_size(), N = B * T;
    detail::check_sequence("GRU", name(), x, input_size(), B, T);
    detail::check_state("GRU", name(), "s0.h", s0.h, H, B);
    cache.B = B;
    cache.T = T;
    ensure_shape(cache.gates, 3 * H, N);
    ensure_shape(cache.hn, H, N);
    ensure_shape(cache.h_prev, H, N);
    ensure_shape(cache.gh, 3 * H, B);
    ensure_shape(h_all, H, N);

    gemm<Scalar>(cell.weight_ih.value, false, x, false, cache.gates, false);
    cell.add_input_biases(cache.gates);
    time_slice(cache.h_prev, 0, B, T) = s0.h;
    cache.w_hh.pack(cell.weight_hh.value, false);
    detail::for_sequence_shares(B, double(3 * H) * double(H) * double(B), [&](Index b0, Index b1) {
      using detail::sequences;
      auto gh = cache.gh.middleCols(b0, b1 - b0);
      for (Index t = 0; t < T; ++t) {
        TimeSlice<Scalar> h_prev = sequences(time_slice(cache.h_prev, t, B, T), b0, b1);
        TimeSlice<Scalar> h = sequences(time_slice(h_all, t, B, T), b0, b1);
        cache.w_hh.multiply(h_prev, gh, false);
        Cell::gates_forward(sequences(time_slice(cache.gates, t, B, T), b0, b1), gh, cell.bias_hh.value.bottomRows(H),
                            h_prev, sequences(time_slice(cache.hn, t, B, T), b0, b1), h);
        if (t + 1 < T) sequences(time_slice(cache.h_prev, t + 1, B, T), b0, b1) = h;
      }
    });
    sT.h = time_slice(h_all, T - 1, B, T);  // s0 has been read: sT may be the same object
  }

  // dh_all: ∂L/∂h_all (H, B*T); dsT.h: ∂L/∂sT.h from a later chunk, or empty for zero.
  // -> dx: (D, B*T), ds0.h: (H, B); ADDS into the parameter gradients.
  void backward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, const ConstMatRef<Scalar>& dh_all,
                const State& dsT, Cache& cache, Mat<Scalar>& dx, State& ds0) {
    const Index H = hidden_size(), N = B * T;
    detail::check_sequence("GRU", name(), x, input_size(), B, T);
    detail::check_state("GRU", name(), "s0.h", s0.h, H, B);
    detail::check_shape("GRU", name(), "dh_all", dh_all, H, N);
    detail::check_state("GRU", name(), "dsT.h", dsT.h, H, B, true);
    detail::check_cache("GRU", name(), cache.B, cache.T, B, T);
    ensure_shape(cache.dgi, 3 * H, N);
    ensure_shape(cache.dgh, 3 * H, N);
    ensure_shape(cache.dh, H, B);
    if (dsT.h.size()) cache.dh = dsT.h; else cache.dh.setZero();

    cache.w_hh.pack(cell.weight_hh.value, true);  // W_hhᵀ (H, 3H)
    detail::for_sequence_shares(B, double(3 * H) * double(H) * double(B), [&](Index b0, Index b1) {
      using detail::sequences;
      auto dh = cache.dh.middleCols(b0, b1 - b0);
      for (Index t = T - 1; t >= 0; --t) {
        TimeSlice<Scalar> dgh = sequences(time_slice(cache.dgh, t, B, T), b0, b1);
        Cell::gates_backward(sequences(time_slice(cache.gates, t, B, T), b0, b1),
                             sequences(time_slice(cache.hn, t, B, T), b0, b1),
                             sequences(time_slice(cache.h_prev, t, B, T), b0, b1),
                             sequences(detail::time_slice_ref(dh_all, t, B, T), b0, b1), dh,
                             sequences(time_slice(cache.dgi, t, B, T), b0, b1), dgh);
        cache.w_hh.multiply(dgh, dh, true);
      }
    });

    gemm<Scalar>(cache.dgi, false, x, true, cell.weight_ih.grad, true);
    gemm<Scalar>(cache.dgh, false, cache.h_prev, true, cell.weight_hh.grad, true);
    add_row_sums<Scalar>(cell.bias_ih.grad, cache.dgi);
    add_row_sums<Scalar>(cell.bias_hh.grad, cache.dgh);
    ensure_shape(dx, input_size(), N);
    gemm<Scalar>(cell.weight_ih.value, true, cache.dgi, false, dx, false);
    ds0.h = cache.dh;
  }

  // Inference, one step in place: see GruCell::step.
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws) const { cell.step(x, s, ws); }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    cell.for_each_param(visit);
  }
};

}  // namespace seqgen
