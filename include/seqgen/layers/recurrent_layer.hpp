// One driver for the recurrent layers: RecurrentLayer<Cell> runs a cell (RnnCell in rnn.hpp, LstmCell
// in lstm.hpp, GruCell in gru.hpp) over B sequences of T steps for training, doing the big products
// once for all N = B·T tokens. With G the cell's gate count (1, 4, 3):
//   forward   A = W_ih X + the cell's input-side biases, one GEMM, A: (G·H, N). Per step only
//             W_hh h_{t−1}, added into A_t (or kept apart in gh for a cell that needs it so), and the
//             cell's gates, which turn A_t into the gate activations and write h_t.
//   backward  per step, t = T−1 … 0: the cell's gates backward, giving dA_t (input side) and dGh_t
//             (hidden side: dA_t itself unless the cell keeps W_hh h apart), then
//             ∂L/∂h_{t−1} = W_hhᵀ dGh_t (+ what the cell leaves in dh). Then one GEMM each for
//             dW_ih += dA Xᵀ, dx = W_ihᵀ dA and dW_hh += dGh H_prevᵀ (H_prev: h_{t−1} of every token),
//             and the cell's bias gradients.
// The per-step loops pack W_hh (or W_hhᵀ) once and share the B sequences out among the threads, each
// running every step on its own columns (for_sequence_shares). A call with T = 1 is one training step.
//
// Layout: x is (D, B*T) with token (b, t) in column b*T + t (core/tensor.hpp); the B columns of step t
// are the strided view time_slice(x, t, B, T).
//
// Contract: forward ASSIGNS h_all, sT and the cache. backward ADDS into every Param::grad and ASSIGNS dx
// and ds0; it reads the cache of the forward with the same x, B, T and s0. sT may be the same object as
// s0, and ds0 the same as dsT, to carry a state from one chunk of a long sequence to the next. step()
// (inference: one step in place, no cache) is the cell's own.
//
// What a cell supplies (RnnCell is the smallest example):
//   kName, kGates                 "LSTM", 4: W_ih is (G·H, D) and W_hh (G·H, H)
//   kOwnHiddenProduct             W_hh h_{t−1} goes to its own (G·H, B) buffer gh rather than into A_t,
//                                 and backward gives a separate dGh for W_hh (GRU: r multiplies W_hn h)
//   kDirectHiddenPath             backward_step leaves in dh the part of ∂L/∂h_{t−1} that does not pass
//                                 through W_hh, and the driver adds W_hhᵀ dGh to it (GRU: z ⊙ h_{t−1})
//   State, StepWorkspace, Saved   the state's parts (h, and c for the LSTM), step()'s buffers, and what
//                                 the cell keeps per token besides the gates and h_{t−1}
//   for_each_part(f, s...)        f("h", s.h...) for every part of the states s...
//   weight_ih, weight_hh, name, input_size(), hidden_size(), zero_state(B), step(), for_each_param()
//   begin_forward(s0, B, T, saved)   sizes `saved` and keeps the parts of s0 other than h
//   add_input_biases(A)              the biases that are simply added to W_ih X
//   forward_step(share, t, a, gh, h_prev, h, saved, sT)
//       step t of the sequences of one thread's share (all matrices (rows, b), b sequences): a (G·H)
//       holds the pre-activations on entry (with W_hh h_{t−1} unless kOwnHiddenProduct, else that is
//       gh) and the gate activations on return; h_prev: h_{t−1}; writes h = h_t, and the other parts
//       of the state where step t+1 reads them (into sT after the last step)
//   backward_step(share, t, a, h_prev, dh_out, dh, da, dgh, saved, dstate)
//       step t back: a holds step t's activations, dh_out = ∂L/∂h_t from the output; on entry dh
//       holds ∂L/∂h_t from step t+1 and dstate the other parts' gradients from step t+1. Writes da
//       (and dgh with kOwnHiddenProduct), the other parts of dstate for step t−1, and leaves dh as
//       scratch (or as its direct part with kDirectHiddenPath) for the layer's W_hhᵀ dgh
//   add_bias_grads(dA, dGh, saved)   ADDS the bias gradients
#pragma once

#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {
namespace detail {

// Whether a recurrent layer's State has a cell c (LSTM) besides h.
template <class S, class = void>
struct HasCellState : std::false_type {};
template <class S>
struct HasCellState<S, std::void_t<decltype(std::declval<S&>().c)>> : std::true_type {};

// The sequences [b0, b1) of a batch of B sequences of T steps: one thread's share of a time loop.
template <typename Scalar>
struct SequenceShare {
  Index B, T, b0, b1;

  // Step t of the share in a per-token matrix m (rows, B*T): columns b*T + t for b in [b0, b1).
  TimeSlice<Scalar> at(Mat<Scalar>& m, Index t) const {
    return TimeSlice<Scalar>(m.data() + (b0 * T + t) * m.rows(), m.rows(), b1 - b0, Eigen::OuterStride<>(T * m.rows()));
  }
  // The same for a Ref, whose columns may be further apart than rows() (a block of a taller matrix).
  ConstTimeSlice<Scalar> at(const ConstMatRef<Scalar>& m, Index t) const {
    return ConstTimeSlice<Scalar>(m.data() + (b0 * T + t) * m.outerStride(), m.rows(), b1 - b0,
                                  Eigen::OuterStride<>(T * m.outerStride()));
  }
  // The share of a per-sequence matrix m (rows, B), such as a part of a state: columns [b0, b1).
  TimeSlice<Scalar> of(Mat<Scalar>& m) const {
    return TimeSlice<Scalar>(m.data() + b0 * m.rows(), m.rows(), b1 - b0, Eigen::OuterStride<>(m.rows()));
  }
};

// Runs a recurrent layer's time loop, body(b0, b1) over the sequences [b0, b1), with the B sequences
// shared out among the threads when a step's recurrent product (`work` multiply-adds) is worth
// splitting, else body(0, B) on the calling thread. The sequences of a batch never interact inside
// a layer, so each thread runs every step on its share without waiting for the others (one team for
// the whole loop, not one per step), and a column's result does not depend on the split.
template <class Body>
void for_sequence_shares(Index B, double work, Body&& body) {
  parallel_team(B > 1 && worth_a_team_for_products(work), [&](int t, int nt) {
    Index b0 = 0, b1 = B;
    thread_share(B, t, nt, 1, b0, b1);
    if (b1 > b0) body(b0, b1);
  });
}

// x: (D, B*T) with B, T > 0 and B*T representable. Nothing is multiplied before it is known not to
// overflow: check() evaluates its message even when it passes.
template <typename Scalar>
void check_sequence(const char* kind, const std::string& name, const ConstMatRef<Scalar>& x, Index D, Index B,
                    Index T) {
  check<ShapeError>(B > 0 && T > 0, kind, " '", name, "': B and T must be positive, got B=", B, ", T=", T);
  check<ShapeError>(B <= std::numeric_limits<Index>::max() / T, kind, " '", name, "': B=", B, " and T=", T,
                    " are too large, B*T overflows");
  check<ShapeError>(x.rows() == D, kind, " '", name, "': input has ", x.rows(), " rows, expected ", D,
                    " (input_size)");
  const Index N = B * T;
  check<ShapeError>(x.cols() == N, kind, " '", name, "': input has ", x.cols(), " columns, expected B*T = ", N,
                    " (B=", B, ", T=", T, ")");
}

// A (rows, cols) argument such as dh_all; `what` names it in the message.
template <typename Scalar>
void check_shape(const char* kind, const std::string& name, const char* what, const ConstMatRef<Scalar>& m,
                 Index rows, Index cols) {
  check<ShapeError>(m.rows() == rows && m.cols() == cols, kind, " '", name, "': ", what, " is (", m.rows(), ", ",
                    m.cols(), "), expected (", rows, ", ", cols, ")");
}

// One part of a state, (H, B), named `which` + `part` ("s0." "h"); with empty_ok an empty matrix also
// passes (it stands for zeros).
template <typename Scalar>
void check_state(const char* kind, const std::string& name, const char* which, const char* part, const Mat<Scalar>& m,
                 Index H, Index B, bool empty_ok = false) {
  check<ShapeError>((empty_ok && m.size() == 0) || (m.rows() == H && m.cols() == B), kind, " '", name, "': ", which,
                    part, " is (", m.rows(), ", ", m.cols(), "), expected (", H, ", ", B, ") = (hidden_size, B)",
                    empty_ok ? " or empty" : "");
}

// A cell's step() arguments: x (D, B) and every part of the state s, (H, B).
template <template <typename> class CellT, typename Scalar>
void check_step(const CellT<Scalar>& cell, const ConstMatRef<Scalar>& x, const typename CellT<Scalar>::State& s) {
  using Cell = CellT<Scalar>;
  check<ShapeError>(x.rows() == cell.input_size(), Cell::kName, " '", cell.name, "': input has ", x.rows(),
                    " rows, expected ", cell.input_size(), " (input_size)");
  Cell::for_each_part(
      [&](const char* part, const Mat<Scalar>& m) {
        check_state(Cell::kName, cell.name, "state ", part, m, cell.hidden_size(), x.cols());
      },
      s);
}

// backward needs the cache of a forward over the same B and T.
inline void check_cache(const char* kind, const std::string& name, Index cache_B, Index cache_T, Index B, Index T) {
  check<ShapeError>(cache_B == B && cache_T == T, kind, " '", name, "': backward called with B=", B, ", T=", T,
                    " but the cache holds a forward with B=", cache_B, ", T=", cache_T, " (run forward first)");
}

// A cell's sizes: positive, and G·H (the rows of W_ih and W_hh) representable.
inline void check_sizes(const char* kind, const std::string& name, Index D, Index H, Index G) {
  check<ConfigError>(D > 0 && H > 0, kind, " '", name, "': sizes must be positive, got input_size=", D,
                     " hidden_size=", H);
  check<ConfigError>(H <= std::numeric_limits<Index>::max() / G, kind, " '", name, "': hidden_size=", H,
                     " is too large for ", G, " gates");
}

}  // namespace detail

// Declared for any type; defined for a cell template applied to a scalar, CellT<Scalar>.
template <class Cell>
struct RecurrentLayer;

template <template <typename> class CellT, typename ScalarT>
struct RecurrentLayer<CellT<ScalarT>> {
  using Scalar = ScalarT;
  using Cell = CellT<Scalar>;
  using State = typename Cell::State;
  using StepWorkspace = typename Cell::StepWorkspace;
  static constexpr Index G = Cell::kGates;

  // What backward reads, filled by forward, then scratch of both passes. N = B·T, same layout as x.
  struct Cache {
    Index B = 0, T = 0;          // of the forward that filled it
    Mat<Scalar> gates;           // (G·H, N) gate activations (the RNN's one gate is h_t itself)
    Mat<Scalar> h_prev;          // (H, N)   h_{t−1}, with s0.h in the t = 0 columns
    typename Cell::Saved saved;  // what else the cell keeps per token
    Mat<Scalar> gh;              // (G·H, B) forward scratch W_hh h_{t−1}, with kOwnHiddenProduct only
    Mat<Scalar> dgates;          // (G·H, N) ∂L/∂A, the input side
    Mat<Scalar> dgh;             // (G·H, N) the hidden side, with kOwnHiddenProduct only
    State dstate;                // (H, B) each part: ∂L/∂s carried from step t+1 to step t
    PackedMatrix<Scalar> w_hh;   // W_hh packed for the forward's steps, W_hhᵀ for the backward's
  };

  Cell cell;

  RecurrentLayer() = default;
  RecurrentLayer(std::string name, Index input_size, Index hidden_size, Rng& rng)
      : cell(std::move(name), input_size, hidden_size, rng) {}

  const std::string& name() const { return cell.name; }
  Index input_size() const { return cell.input_size(); }
  Index hidden_size() const { return cell.hidden_size(); }
  State zero_state(Index B) const { return cell.zero_state(B); }

  // x: (D, B*T), s0: (H, B) each part  ->  h_all: (H, B*T), the final state sT: (H, B) each part.
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, Mat<Scalar>& h_all, State& sT,
               Cache& cache) const {
    const Index H = hidden_size();
    detail::check_sequence(Cell::kName, name(), x, input_size(), B, T);
    check_state("s0.", s0, B, false);
    const Index N = B * T;  // checked above not to overflow
    cache.B = B;
    cache.T = T;
    ensure_shape(cache.gates, G * H, N);
    ensure_shape(cache.h_prev, H, N);
    if (Cell::kOwnHiddenProduct) ensure_shape(cache.gh, G * H, B);
    ensure_shape(h_all, H, N);
    cell.begin_forward(s0, B, T, cache.saved);

    gemm<Scalar>(cell.weight_ih.value, false, x, false, cache.gates, false);
    cell.add_input_biases(cache.gates);
    time_slice(cache.h_prev, 0, B, T) = s0.h;
    // s0 is not read after this point, so sT may be the same object.
    Cell::for_each_part([&](const char*, Mat<Scalar>& s) { ensure_shape(s, H, B); }, sT);

    cache.w_hh.pack(cell.weight_hh.value, false);
    detail::for_sequence_shares(B, double(G * H) * double(H) * double(B), [&](Index b0, Index b1) {
      const detail::SequenceShare<Scalar> share{B, T, b0, b1};
      for (Index t = 0; t < T; ++t) {
        TimeSlice<Scalar> a = share.at(cache.gates, t), h_prev = share.at(cache.h_prev, t), h = share.at(h_all, t);
        // W_hh h_{t−1}: added into the pre-activations, or apart in gh.
        TimeSlice<Scalar> gh = Cell::kOwnHiddenProduct ? share.of(cache.gh) : a;
        cache.w_hh.multiply(h_prev, gh, !Cell::kOwnHiddenProduct);
        cell.forward_step(share, t, a, gh, h_prev, h, cache.saved, sT);
        if (t + 1 < T) share.at(cache.h_prev, t + 1) = h;
      }
    });
    sT.h = time_slice(h_all, T - 1, B, T);
  }

  // dh_all: ∂L/∂h_all (H, B*T); dsT: ∂L/∂sT from a later chunk, or empty matrices for zero.
  // -> dx: (D, B*T), ds0: (H, B) each part; ADDS into the parameter gradients.
  void backward(const ConstMatRef<Scalar>& x, Index B, Index T, const State& s0, const ConstMatRef<Scalar>& dh_all,
                const State& dsT, Cache& cache, Mat<Scalar>& dx, State& ds0) {
    const Index H = hidden_size();
    detail::check_sequence(Cell::kName, name(), x, input_size(), B, T);
    check_state("s0.", s0, B, false);
    const Index N = B * T;  // checked above not to overflow
    detail::check_shape(Cell::kName, name(), "dh_all", dh_all, H, N);
    check_state("dsT.", dsT, B, true);
    detail::check_cache(Cell::kName, name(), cache.B, cache.T, B, T);
    ensure_shape(cache.dgates, G * H, N);
    if (Cell::kOwnHiddenProduct) ensure_shape(cache.dgh, G * H, N);
    Cell::for_each_part(
        [&](const char*, Mat<Scalar>& d, const Mat<Scalar>& d_T) {
          ensure_shape(d, H, B);
          if (d_T.size()) d = d_T; else d.setZero();
        },
        cache.dstate, dsT);

    cache.w_hh.pack(cell.weight_hh.value, true);  // W_hhᵀ (H, G·H)
    detail::for_sequence_shares(B, double(G * H) * double(H) * double(B), [&](Index b0, Index b1) {
      const detail::SequenceShare<Scalar> share{B, T, b0, b1};
      TimeSlice<Scalar> dh = share.of(cache.dstate.h);
      for (Index t = T - 1; t >= 0; --t) {
        TimeSlice<Scalar> da = share.at(cache.dgates, t);
        TimeSlice<Scalar> dgh = Cell::kOwnHiddenProduct ? share.at(cache.dgh, t) : da;
        cell.backward_step(share, t, share.at(cache.gates, t), share.at(cache.h_prev, t), share.at(dh_all, t), dh, da,
                           dgh, cache.saved, cache.dstate);
        cache.w_hh.multiply(dgh, dh, Cell::kDirectHiddenPath);
      }
    });

    const Mat<Scalar>& dA = cache.dgates;
    const Mat<Scalar>& dGh = Cell::kOwnHiddenProduct ? cache.dgh : cache.dgates;
    gemm<Scalar>(dA, false, x, true, cell.weight_ih.grad, true);
    gemm<Scalar>(dGh, false, cache.h_prev, true, cell.weight_hh.grad, true);
    cell.add_bias_grads(dA, dGh, cache.saved);
    ensure_shape(dx, input_size(), N);
    gemm<Scalar>(cell.weight_ih.value, true, dA, false, dx, false);
    Cell::for_each_part([](const char*, Mat<Scalar>& d0, const Mat<Scalar>& d) { d0 = d; }, ds0, cache.dstate);
  }

  // Inference, one step in place: see the cell's step().
  void step(const ConstMatRef<Scalar>& x, State& s, StepWorkspace& ws) const { cell.step(x, s, ws); }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    cell.for_each_param(visit);
  }

 private:
  // Every part of a state s, "s0." or "dsT." by `which`, is (H, B) (or empty with empty_ok).
  void check_state(const char* which, const State& s, Index B, bool empty_ok) const {
    Cell::for_each_part(
        [&](const char* part, const Mat<Scalar>& m) {
          detail::check_state(Cell::kName, name(), which, part, m, hidden_size(), B, empty_ok);
        },
        s);
  }
};

}  // namespace seqgen
