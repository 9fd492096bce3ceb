// Elman RNN (Elman, 1990, "Finding structure in time"), the textbook recurrent network:
//   h_t = tanh(W_hh h_{t−1} + W_ih x_t + b)          y_t = W_hy h_t + b_y   (ElmanRnn's read-out)
// Shapes: x_t (D, B)   h (H, B)   W_ih (H, D)   W_hh (H, H)   b (H, 1)   W_hy (O, H)   y_t (O, B).
// PyTorch's nn.RNNCell has two biases, b_ih + b_hh; this layer has their sum, b.
//
// Backward through one step, with dh = ∂L/∂h_t (from the output at t and from step t+1):
//   da = dh ⊙ (1 − h_t²)        ∂L/∂h_{t−1} = W_hhᵀ da
//
// RnnCell holds the parameters and advances a state by one step for inference (step). RnnLayer runs
// the cell over B sequences of T steps for training, doing the big products once for all N = B·T tokens:
//   forward   A = W_ih X + b in one GEMM; per step only A_t += W_hh h_{t−1} and h_t = tanh(A_t)
//   backward  per step, t = T−1 … 0: da_t and dh_{t−1} = W_hhᵀ da_t; then one GEMM each for
//             dW_ih += dA Xᵀ, dx = W_ihᵀ dA and dW_hh += dA H_prevᵀ (H_prev: h_{t−1} of every token)
// The per-step loops pack W_hh (or W_hhᵀ) once and share the B sequences out among the threads, each
// running every step on its own columns (detail::for_sequence_shares).
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
#include "seqgen/layers/recurrent_common.hpp"

namespace seqgen {

template <typename Scalar>
struct RnnCell {
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

  RnnCell() = default;
  // PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H).
  RnnCell(std::string name_, Index input_size, Index hidden_size, Rng& rng) : name(std::move(name_)) {
    const Index D = input_size, H = hidden_size;
    detail::check_sizes("RNN", name, D, H);
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
    check<ShapeError>(x.rows() == input_size(), "RNN '", name, "': input has ", x.rows(), " rows, expected ",
                      input_size(), " (input_size)");
    detail::check_state("RNN", name, "state h", s.h, H, B);
    ensure_shape(ws.a, H, B);
    gemm<Scalar>(weight_ih.value, false, x, false, ws.a, false);
    gemm<Scalar>(weight_hh.value, false, s.h, false, ws.a, true);
    add_bias(ws.a);
    activate(ws.a);
    s.h = ws.a;
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight_ih);
    visit(weight_hh);
    visit(bias);
  }

  // a += b on every column of a (H, n) matrix.
  void add_bias(MatRef<Scalar> a) const {
    add_to_columns<Scalar>(a, bias.value);
  }

  // The element-wise part of one step: a (H, B) holds the pre-activation on entry and h_t = tanh(a) on return.
  static void activate(MatRef<Scalar> a) {
    parallel_for(a.cols(), a.size() >= kParallelMinWork, [&](Index b) { a.col(b).array() = a.col(b).array().tanh(); });
  }

  // One step back: da = (dh_out + dh) ⊙ (1 − h²), with h = h_t, dh_out = ∂L/∂h_t from the output and,
  // on entry, dh = ∂L/∂h_t from step t+1. dh is left as scratch (the caller sets it to W_hhᵀ da).
  static void activate_backward(const ConstMatRef<Scalar>& h, const ConstMatRef<Scalar>& dh_out, MatRef<Scalar> dh,
                                MatRef<Scalar> da) {
    const Scalar one(1);
    parallel_for(h.cols(), h.size() >= kParallelMinWork, [&](Index b) {
      da.col(b).array() = (dh_out.col(b).array() + dh.col(b).array()) * (one - h.col(b).array().square());
    });
  }
};

template <typename Scalar>
struct RnnLayer {
  using Cell = RnnCell<Scalar>;
  using State = typename Cell::State;
  using StepWorkspace = typename Cell::StepWorkspace;

  // What backward reads, filled by forward, then backward's own scratch. N = B·T, same layout as x.
  struct Cache {
    Index B = 0, T = 0;  // of the forward that filled it
    Mat<Scalar> h;       // (H, N) h_t
    Mat<Scalar> h_prev;  // (H, N) h_{t−1}, with s0.h in the t = 0 columns
    Mat<Scalar> da;      // (H, N) ∂L/∂a
    Mat<Scalar> dh;      // (H, B) carried from step t+1 to step t
    PackedMatrix<Scalar> w_hh;  // W_hh packed for the forward's steps, W_hhᵀ for the backward's
  };

  Cell cell;

  RnnLayer() = default;
  RnnLayer(std::string name, Index input_size, Index hidden_size, Rng& rng)
      : cell(std::move(name), input_size, hidden_size, rng) {}

  const std::string& name() const { return cell.name; }
  Index input_size() const { return cell.input_size(); }
  Index hidden_size() const { return cell.hidden_size(); }
  State zero_state(Index B) const { return cell.zero_state(B); }

  // x: (D, B*T), s0.h: (H, B)  ->  h_all: (H, B*T), the final state sT.h: (H, B).
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, Mat<Scalar>& h_all, State& sT,
               Cache& cache) const {
    const Index H = hidden_size(), N = B * T;
    detail::check_sequence("RNN", name(), x, input_size(), B, T);
    detail::check_state("RNN", name(), "s0.h", s0.h, H, B);
    cache.B = B;
    cache.T = T;
    ensure_shape(cache.h, H, N);
    ensure_shape(cache.h_prev, H, N);
    ensure_shape(h_all, H, N);

    gemm<Scalar>(cell.weight_ih.value, false, x, false, h_all, false);
    cell.add_bias(h_all);
    time_slice(cache.h_prev, 0, B, T) = s0.h;
    cache.w_hh.pack(cell.weight_hh.value, false);
    detail::for_sequence_shares(B, double(H) * double(H) * double(B), [&](Index b0, Index b1) {
      using detail::sequences;
      for (Index t = 0; t < T; ++t) {
        TimeSlice<Scalar> h = sequences(time_slice(h_all, t, B, T), b0, b1);
        cache.w_hh.multiply(sequences(time_slice(cache.h_prev, t, B, T), b0, b1), h, true);
        Cell::activate(h);
        if (t + 1 < T) sequences(time_slice(cache.h_prev, t + 1, B, T), b0, b1) = h;
      }
    });
    cache.h = h_all;
    sT.h = time_slice(h_all, T - 1, B, T);  // s0 has been read: sT may be the same object
  }

  // dh_all: ∂L/∂h_all (H, B*T); dsT.h: ∂L/∂sT.h from a later chunk, or empty for zero.
  // -> dx: (D, B*T), ds0.h: (H, B); ADDS into the parameter gradients.
  void backward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, const ConstMatRef<Scalar>& dh_all,
                const State& dsT, Cache& cache, Mat<Scalar>& dx, State& ds0) {
    const Index H = hidden_size(), N = B * T;
    detail::check_sequence("RNN", name(), x, input_size(), B, T);
    detail::check_state("RNN", name(), "s0.h", s0.h, H, B);
    detail::check_shape("RNN", name(), "dh_all", dh_all, H, N);
    detail::check_state("RNN", name(), "dsT.h", dsT.h, H, B, true);
    detail::check_cache("RNN", name(), cache.B, cache.T, B, T);
    ensure_shape(cache.da, H, N);
    ensure_shape(cache.dh, H, B);
    if (dsT.h.size()) cache.dh = dsT.h; else cache.dh.setZero();

    cache.w_hh.pack(cell.weight_hh.value, true);  // W_hhᵀ
    detail::for_sequence_shares(B, double(H) * double(H) * double(B), [&](Index b0, Index b1) {
      using detail::sequences;
      auto dh = cache.dh.middleCols(b0, b1 - b0);
      for (Index t = T - 1; t >= 0; --t) {
        TimeSlice<Scalar> da = sequences(time_slice(cache.da, t, B, T), b0, b1);
        Cell::activate_backward(sequences(time_slice(cache.h, t, B, T), b0, b1),
                                sequences(detail::time_slice_ref(dh_all, t, B, T), b0, b1), dh, da);
        cache.w_hh.multiply(da, dh, false);
      }
    });

    const Mat<Scalar>& dA = cache.da;
    gemm<Scalar>(dA, false, x, true, cell.weight_ih.grad, true);
    gemm<Scalar>(dA, false, cache.h_prev, true, cell.weight_hh.grad, true);
    add_row_sums<Scalar>(cell.bias.grad, dA);
    ensure_shape(dx, input_size(), N);
    gemm<Scalar>(cell.weight_ih.value, true, dA, false, dx, false);
    ds0.h = cache.dh;
  }

  // Inference, one step in place: see RnnCell::step.
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws) const { cell.step(x, s, ws); }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    cell.for_each_param(visit);
  }
};

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
    detail::check_state("ElmanRnn", name, "s0.h", s0.h, hidden_size(), B);
    detail::check_state("ElmanRnn", name, "dsT.h", dsT.h, hidden_size(), B, true);
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
