// Pieces shared by the recurrent layers (rnn.hpp, lstm.hpp, gru.hpp): input checks with messages
// that name the layer, time-step views, and the split of a time loop across the threads.
//
// Every recurrent layer reads a batch in the seqgen layout (core/tensor.hpp): x is (D, B*T) with
// token (b, t) in column b*T + t, and the B columns of step t are the strided view time_slice(x, t, B, T).
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {
namespace detail {

// Whether a recurrent layer's State has a cell c (LSTM) besides h.
template <class S, class = void>
struct HasCellState : std::false_type {};
template <class S>
struct HasCellState<S, std::void_t<decltype(std::declval<S&>().c)>> : std::true_type {};

// time_slice() for a Ref, whose columns may be further apart than rows() (a block of a taller matrix).
template <typename Scalar>
ConstTimeSlice<Scalar> time_slice_ref(const ConstMatRef<Scalar>& m, Index t, Index B, Index T) {
  return ConstTimeSlice<Scalar>(m.data() + t * m.outerStride(), m.rows(), B, Eigen::OuterStride<>(T * m.outerStride()));
}

// Columns [b0, b1) of a time slice: the sequences b0 … b1−1 at that step.
template <typename Scalar>
TimeSlice<Scalar> sequences(TimeSlice<Scalar> s, Index b0, Index b1) {
  return TimeSlice<Scalar>(s.data() + b0 * s.outerStride(), s.rows(), b1 - b0, Eigen::OuterStride<>(s.outerStride()));
}
template <typename Scalar>
ConstTimeSlice<Scalar> sequences(ConstTimeSlice<Scalar> s, Index b0, Index b1) {
  return ConstTimeSlice<Scalar>(s.data() + b0 * s.outerStride(), s.rows(), b1 - b0,
                                Eigen::OuterStride<>(s.outerStride()));
}

// Runs a recurrent layer's time loop, body(b0, b1) over the sequences [b0, b1), with the B sequences
// shared out among the threads when a step's recurrent product (`work` multiply-adds) is worth
// splitting, else body(0, B) on the calling thread. The sequences of a batch never interact inside
// a layer, so each thread runs every step on its share without waiting for the others (one team for
// the whole loop, not one per step), and a column's result does not depend on the split.
template <class Body>
void for_sequence_shares(Index B, double work, Body&& body) {
  parallel_team(B > 1 && work >= kGemmParallelMinWork, [&](int t, int nt) {
    Index b0 = 0, b1 = B;
    thread_share(B, t, nt, 1, b0, b1);
    if (b1 > b0) body(b0, b1);
  });
}

// x: (D, B*T) with B, T > 0.
template <typename Scalar>
void check_sequence(const char* kind, const std::string& name, const ConstMatRef<Scalar>& x, Index D, Index B,
                    Index T) {
  check<ShapeError>(B > 0 && T > 0, kind, " '", name, "': B and T must be positive, got B=", B, ", T=", T);
  check<ShapeError>(x.rows() == D, kind, " '", name, "': input has ", x.rows(), " rows, expected ", D,
                    " (input_size)");
  check<ShapeError>(x.cols() == B * T, kind, " '", name, "': input has ", x.cols(), " columns, expected B*T = ",
                    B * T, " (B=", B, ", T=", T, ")");
}

// A (rows, cols) argument such as dh_all; `what` names it in the message.
template <typename Scalar>
void check_shape(const char* kind, const std::string& name, const char* what, const ConstMatRef<Scalar>& m,
                 Index rows, Index cols) {
  check<ShapeError>(m.rows() == rows && m.cols() == cols, kind, " '", name, "': ", what, " is (", m.rows(), ", ",
                    m.cols(), "), expected (", rows, ", ", cols, ")");
}

// One part of a state, (H, B); with empty_ok an empty matrix also passes (it stands for zeros).
template <typename Scalar>
void check_state(const char* kind, const std::string& name, const char* what, const Mat<Scalar>& m, Index H,
                 Index B, bool empty_ok = false) {
  check<ShapeError>((empty_ok && m.size() == 0) || (m.rows() == H && m.cols() == B), kind, " '", name, "': ", what,
                    " is (", m.rows(), ", ", m.cols(), "), expected (", H, ", ", B, ") = (hidden_size, B)",
                    empty_ok ? " or empty" : "");
}

// backward needs the cache of a forward over the same B and T.
inline void check_cache(const char* kind, const std::string& name, Index cache_B, Index cache_T, Index B, Index T) {
  check<ShapeError>(cache_B == B && cache_T == T, kind, " '", name, "': backward called with B=", B, ", T=", T,
                    " but the cache holds a forward with B=", cache_B, ", T=", cache_T, " (run forward first)");
}

inline void check_sizes(const char* kind, const std::string& name, Index D, Index H) {
  check<ConfigError>(D > 0 && H > 0, kind, " '", name, "': sizes must be positive, got input_size=", D,
                     " hidden_size=", H);
}

}  // namespace detail
}  // namespace seqgen
