// The tensor layout used everywhere in seqgen, written down once.
//
// Activations are Eigen column-major matrices of shape (features, tokens):
//   rows    = features (C channels, H hidden units, V vocabulary entries, ...)
//   columns = tokens, N = B * T of them, token (b, t) in column  b * T + t.
// Column-major (C, B*T) is the same memory as llm.c's row-major (B, T, C): each token's feature
// vector is contiguous, and each sequence is a contiguous block of T columns.
//
// Recurrent layers need "all sequences at time t": columns t, T + t, 2T + t, ...  That is a
// (C, B) matrix with outer stride T * C, which Eigen maps without a copy (see time_slice).
//
// Weights follow PyTorch's shapes, (out_features, in_features), so y = W x. The one exception is
// the token embedding, stored as (C, V) so that each token's vector is a contiguous column; it is
// the transpose of PyTorch's (V, C) but the same memory.
//
// Shape letters (from llm.c): B batch, T time, C channels, H hidden, V vocab, NH heads,
// HS head size, N = B * T tokens.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

namespace seqgen {

using Index = Eigen::Index;

template <typename Scalar>
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Scalar>
using Vec = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// Read-only view of any matrix, block or map with unit inner stride: no copy when passing a
// Mat, a middleCols() block or a time_slice().
template <typename Scalar>
using ConstMatRef = Eigen::Ref<const Mat<Scalar>>;
// Writable view of an already-sized matrix, block or map.
template <typename Scalar>
using MatRef = Eigen::Ref<Mat<Scalar>>;

// A strided view of the B columns of time step t in a (rows, B * T) matrix.
template <typename Scalar>
using TimeSlice = Eigen::Map<Mat<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename Scalar>
using ConstTimeSlice = Eigen::Map<const Mat<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <typename Scalar>
TimeSlice<Scalar> time_slice(Mat<Scalar>& m, Index t, Index B, Index T) {
  return TimeSlice<Scalar>(m.data() + t * m.rows(), m.rows(), B, Eigen::OuterStride<>(T * m.rows()));
}
template <typename Scalar>
ConstTimeSlice<Scalar> time_slice(const Mat<Scalar>& m, Index t, Index B, Index T) {
  return ConstTimeSlice<Scalar>(m.data() + t * m.rows(), m.rows(), B, Eigen::OuterStride<>(T * m.rows()));
}

// Token ids. Layout as above: id of token (b, t) at index b * T + t.
using Token = std::int32_t;

// A non-owning view of token ids (C++17 has no std::span). A vector converts implicitly, but only
// one that outlives the statement: a view of a temporary vector would dangle once the statement
// ends, so that conversion does not compile (name the vector first).
struct TokenSpan {
  const Token* data = nullptr;
  Index size = 0;
  TokenSpan() = default;
  TokenSpan(const Token* d, Index n) : data(d), size(n) {}
  TokenSpan(const std::vector<Token>& v) : data(v.data()), size(static_cast<Index>(v.size())) {}  // NOLINT: implicit on purpose
  TokenSpan(std::vector<Token>&&) = delete;
  TokenSpan(const std::vector<Token>&&) = delete;
  Token operator[](Index i) const { return data[i]; }
  const Token* begin() const { return data; }
  const Token* end() const { return data + size; }
};

// Resizes only when the shape changes, so a workspace reused with the same shape never allocates.
template <typename Derived>
void ensure_shape(Eigen::PlainObjectBase<Derived>& m, Index rows, Index cols) {
  if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
}

}  // namespace seqgen
