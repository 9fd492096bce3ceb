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
// LstmCell holds the parameters and advances a state by one step for inference (step). LstmLayer runs
// the cell over B sequences of T steps for training, doing the big products once for all N = B·T tokens:
//   forward   A = W_ih X + b_ih + b_hh in one GEMM; per step only A_t += W_hh h_{t−1} and the gates
//   backward  per step, t = T−1 … 0: the gates backward and dh_{t−1} = W_hhᵀ dA_t; then one GEMM each for
//             dW_ih += dA Xᵀ, dx = W_ihᵀ dA and dW_hh += dA H_prevᵀ (H_prev: h_{t−1} of every token)
// The per-step loops pack W_hh (or W_hhᵀ) once and share the B sequences out among the threads, each
// running every step on its own columns (detail::for_sequence_shares).
// A layer call with T = 1 is one training step of the cell.
//
// Contract: LstmLayer::forward ASSIGNS h_all, sT and the cache. backward ADDS into every Param::grad and
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
struct LstmCell {
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

  LstmCell() = default;
  // PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H).
  LstmCell(std::string name_, Index input_size, Index hidden_size, Rng& rng) : name(std::move(name_)) {
    const Index D = input_size, H = hidden_size;
    detail::check_sizes("LSTM", name, D, H);
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
    check<ShapeError>(x.rows() == input_size(), "LSTM '", name, "': input has ", x.rows(), " rows, expected ",
                      input_size(), " (input_size)");
    detail::check_state("LSTM", name, "state h", s.h, H, B);
    detail::check_state("LSTM", name, "state c", s.c, H, B);
    ensure_shape(ws.gates, 4 * H, B);
    ensure_shape(ws.tanh_c, H, B);
    gemm<Scalar>(weight_ih.value, false, x, false, ws.gates, false);
    gemm<Scalar>(weight_hh.value, false, s.h, false, ws.gates, true);
    add_biases(ws.gates);
    gates_forward(ws.gates, s.c, s.c, ws.tanh_c, s.h);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight_ih);
    visit(weight_hh);
    visit(bias_ih);
    visit(bias_hh);
  }

  // a += b_ih + b_hh on every column of a (4H, n) matrix.
  void add_biases(MatRef<Scalar> a) const {
    parallel_for(a.cols(), a.size() >= kParallelMinWork,
                 [&](Index n) { a.col(n) += bias_ih.value.col(0) + bias_hh.value.col(0); });
  }

  // The element-wise part of one step. a: (4H, B) pre-activations on entry, activations i, f, g, o on
  // return. Writes c = c_t, tanh_c = tanh(c_t) and h = h_t, all (H, B). c may be the same memory as c_prev.
  static void gates_forward(MatRef<Scalar> a, const ConstMatRef<Scalar>& c_prev, MatRef<Scalar> c,
                            MatRef<Scalar> tanh_c, MatRef<Scalar> h) {
    const Index H = c.rows(), B = c.cols();
    parallel_for(B, 4 * H * B >= kParallelMinWork, [&](Index b) {
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
    parallel_for(B, 4 * H * B >= kParallelMinWork, [&](Index b) {
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

template <typename Scalar>
struct LstmLayer {
  using Cell = LstmCell<Scalar>;
  using State = typename Cell::State;
  using StepWorkspace = typename Cell::StepWorkspace;

  // What backward reads, filled by forward, then backward's own scratch. N = B·T, same layout as x.
  struct Cache {
    Index B = 0, T = 0;  // of the forward that filled it
    Mat<Scalar> gates;   // (4H, N) i, f, g, o
    Mat<Scalar> c_prev;  // (H, N)  c_{t−1}, with s0.c in the t = 0 columns
    Mat<Scalar> tanh_c;  // (H, N)  tanh(c_t)
    Mat<Scalar> h_prev;  // (H, N)  h_{t−1}, with s0.h in the t = 0 columns
    Mat<Scalar> dgates;  // (4H, N) ∂L/∂a
    Mat<Scalar> dbias;   // (4H, 1)
    Mat<Scalar> dh, dc;  // (H, B)  carried from step t+1 to step t
    PackedMatrix<Scalar> w_hh;  // W_hh packed for the forward's steps, W_hhᵀ for the backward's
  };

  Cell cell;

  LstmLayer() = default;
  LstmLayer(std::string name, Index input_size, Index hidden_size, Rng& rng)
      : cell(std::move(name), input_size, hidden_size, rng) {}

  const std::string& name() const { return cell.name; }
  Index input_size() const { return cell.input_size(); }
  Index hidden_size() const { return cell.hidden_size(); }
  State zero_state(Index B) const { return cell.zero_state(B); }

  // x: (D, B*T), s0: (H, B) each  ->  h_all: (H, B*T), the final state sT: (H, B) each.
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, Mat<Scalar>& h_all, State& sT,
               Cache& cache) const {
    const Index H = hidden_size(), N = B * T;
    detail::check_sequence("LSTM", name(), x, input_size(), B, T);
    detail::check_state("LSTM", name(), "s0.h", s0.h, H, B);
    detail::check_state("LSTM", name(), "s0.c", s0.c, H, B);
    cache.B = B;
    cache.T = T;
    ensure_shape(cache.gates, 4 * H, N);
    ensure_shape(cache.c_prev, H, N);
    ensure_shape(cache.tanh_c, H, N);
    ensure_shape(cache.h_prev, H, N);
    ensure_shape(h_all, H, N);

    gemm<Scalar>(cell.weight_ih.value, false, x, false, cache.gates, false);
    cell.add_biases(cache.gates);
    time_slice(cache.h_prev, 0, B, T) = s0.h;
    time_slice(cache.c_prev, 0, B, T) = s0.c;
    // s0 is not read after this point, so sT may be the same object.
    ensure_shape(sT.h, H, B);
    ensure_shape(sT.c, H, B);

    cache.w_hh.pack(cell.weight_hh.value, false);
    detail::for_sequence_shares(B, double(4 * H) * double(H) * double(B), [&](Index b0, Index b1) {
      using detail::sequences;
      for (Index t = 0; t < T; ++t) {
        const bool last = t + 1 == T;
        TimeSlice<Scalar> a = sequences(time_slice(cache.gates, t, B, T), b0, b1);
        TimeSlice<Scalar> h = sequences(time_slice(h_all, t, B, T), b0, b1);
        // c_t is written where step t+1 reads c_{t−1}, or into sT.c after the last step.
        TimeSlice<Scalar> c =
            sequences(last ? time_slice(sT.c, 0, B, 1) : time_slice(cache.c_prev, t + 1, B, T), b0, b1);
        cache.w_hh.multiply(sequences(time_slice(cache.h_prev, t, B, T), b0, b1), a, true);
        Cell::gates_forward(a, sequences(time_slice(cache.c_prev, t, B, T), b0, b1), c,
                            sequences(time_slice(cache.tanh_c, t, B, T), b0, b1), h);
        if (!last) sequences(time_slice(cache.h_prev, t + 1, B, T), b0, b1) = h;
      }
    });
    sT.h = time_slice(h_all, T - 1, B, T);
  }

  // dh_all: ∂L/∂h_all (H, B*T); dsT: ∂L/∂sT from a later chunk, or empty matrices for zero.
  // -> dx: (D, B*T), ds0: (H, B) each; ADDS into the parameter gradients.
  void backward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, const ConstMatRef<Scalar>& dh_all,
                const State& dsT, Cache& cache, Mat<Scalar>& dx, State& ds0) {
    const Index H = hidden_size(), N = B * T;
    detail::check_sequence("LSTM", name(), x, input_size(), B, T);
    detail::check_state("LSTM", name(), "s0.h", s0.h, H, B);
    detail::check_state("LSTM", name(), "s0.c", s0.c, H, B);
    detail::check_shape("LSTM", name(), "dh_all", dh_all, H, N);
    detail::check_state("LSTM", name(), "dsT.h", dsT.h, H, B, true);
    detail::check_state("LSTM", name(), "dsT.c", dsT.c, H, B, true);
    detail::check_cache("LSTM", name(), cache.B, cache.T, B, T);
    ensure_shape(cache.dgates, 4 * H, N);
    ensure_shape(cache.dbias, 4 * H, 1);
    ensure_shape(cache.dh, H, B);
    ensure_shape(cache.dc, H, B);
    if (dsT.h.size()) cache.dh = dsT.h; else cache.dh.setZero();
    if (dsT.c.size()) cache.dc = dsT.c; else cache.dc.setZero();

    cache.w_hh.pack(cell.weight_hh.value, true);  // W_hhᵀ (H, 4H)
    detail::for_sequence_shares(B, double(4 * H) * double(H) * double(B), [&](Index b0, Index b1) {
      using detail::sequences;
      auto dh = cache.dh.middleCols(b0, b1 - b0);
      auto dc = cache.dc.middleCols(b0, b1 - b0);
      for (Index t = T - 1; t >= 0; --t) {
        TimeSlice<Scalar> da = sequences(time_slice(cache.dgates, t, B, T), b0, b1);
        Cell::gates_backward(sequences(time_slice(cache.gates, t, B, T), b0, b1),
                             sequences(time_slice(cache.c_prev, t, B, T), b0, b1),
                             sequences(time_slice(cache.tanh_c, t, B, T), b0, b1),
                             sequences(detail::time_slice_ref(dh_all, t, B, T), b0, b1), dh, dc, da);
        cache.w_hh.multiply(da, dh, false);
      }
    });

    const Mat<Scalar>& dA = cache.dgates;
    gemm<Scalar>(dA, false, x, true, cell.weight_ih.grad, true);
    gemm<Scalar>(dA, false, cache.h_prev, true, cell.weight_hh.grad, true);
    cache.dbias.setZero();
    add_row_sums<Scalar>(cache.dbias, dA);
    cell.bias_ih.grad += cache.dbias;
    cell.bias_hh.grad += cache.dbias;
    ensure_shape(dx, input_size(), N);
    gemm<Scalar>(cell.weight_ih.value, true, dA, false, dx, false);
    ds0.h = cache.dh;
    ds0.c = cache.dc;
  }

  // Inference, one step in place: see LstmCell::step.
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws) const { cell.step(x, s, ws); }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    cell.for_each_param(visit);
  }
};

}  // namespace seqgen
