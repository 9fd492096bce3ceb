// Fused causal attention of one (sequence, head) that never forms the (T, T) matrix of scores: the
// FlashAttention-2 scheme (Dao, 2023) on the CPU, forward and backward, in seqgen's layout
// (columns are tokens; see attention.hpp).
//
//   Q, K, V: (HS, T)   column i is token i's query, key, value      s = 1/√HS
//   S = Kᵀ Q                              (T, T), never stored whole: S[j, i] = key j · query i
//   P[:, i] = softmax(s·S[0..i, i]), P[j, i] = 0 for j > i
//   Y = V P                               (HS, T)
//   L[i] = log Σ_{j≤i} exp(s·S[j, i])     (T) the log-sum-exp of query i, all backward keeps
//
// Forward. The queries are cut into blocks of Bq = kFlashQueryBlock columns, the keys into blocks
// of Bk = kFlashKeyBlock. Query block [j0, j1) meets key block [i0, i1) (i0 < j1) through those of
// its queries that see a key of it, [q0, j1) with q0 = max(j0, i0), so only the Bk-wide diagonal
// blocks hold masked scores. With running m (max of s·S) and l (sum of exponentials) per query i:
//   S_b = K[:, i0..i1)ᵀ Q[:, q0..j1)                     (Bk, ≤ Bq) scratch
//   m' = max(m, max_j s·S_b[j, i])      α = exp(m − m')   P_b[j, i] = exp(s·S_b[j, i] − m'), 0 if j > i
//   l  = α·l + Σ_j P_b[j, i]            Y[:, i] = α·Y[:, i] + V[:, i0..i1) P_b[:, i]      m = m'
// and at the end Y[:, i] /= l, L[i] = m + log l.
//
// Backward, with dY (HS, T) the gradient of Y:
//   D[i] = dY[:, i] · Y[:, i]                                  (T), first
//   then for each key block [i0, i1), against the queries [i0, T) that see it (n = T − i0 of them),
//   the scores recomputed as one strip of Bk rows:
//     P_b = exp(s·K_bᵀ Q[:, i0..T) − 1 L[i0..T)ᵀ), masked    (Bk, n) scratch
//     dV_b = dY[:, i0..T) P_bᵀ                                (HS, Bk)
//     dP_b = V_bᵀ dY[:, i0..T)                                 (Bk, n) scratch
//     dS_b = s · P_b ⊙ (dP_b − 1 D[i0..T)ᵀ)                     softmax backward, s folded in
//     dK_b = Q[:, i0..T) dS_bᵀ                                (HS, Bk)
//     dQ[:, i0..T) += K_b dS_b                                (HS, n)
// dK_b and dV_b sum over the queries inside one product each; dQ is accumulated over key blocks.
// A strip rather than (Bk, Bq) tiles: each product then packs K_b, V_b once (gemm.hpp packs its
// operands per call), and the strips are O(T), not O(T²).
//
// Memory: O(T) per (sequence, head) (L and D), and per thread a scratch of Bk × max(Bq + 8, 2·T)
// floats, instead of the (T, T) P the reference keeps. Work: forward exponentiates each score
// once, as the reference does, and backward once more; backward has one product more (S
// recomputed). Only the Bk-wide diagonal triangles are computed and masked.
//
// The products run on the calling thread (the caller shares out the (b, h) pairs: attention.hpp
// runs them in a parallel_for), through gemm.hpp's single-thread kernel with its per-thread
// buffers, so nothing here opens a team or allocates. One (b, h) is computed by one thread in a
// fixed order, so its result does not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "seqgen/core/gemm.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {

constexpr Index kFlashQueryBlock = 256;  // Bq
constexpr Index kFlashKeyBlock = 64;     // Bk
static_assert(kFlashQueryBlock % kFlashKeyBlock == 0, "query blocks are whole key blocks");

// The scratch one thread needs at sequence length T: (kFlashKeyBlock, flash_scratch_cols(T)).
// Forward: S_b in Bq columns, then m and l, Bq values each (2·Bq / Bk columns); backward: P_b and
// dS_b, T columns each.
inline Index flash_scratch_cols(Index T) {
  return std::max(kFlashQueryBlock + 2 * kFlashQueryBlock / kFlashKeyBlock, 2 * T);
}

namespace detail {
// C = op(A) op(B) (or +=) on the calling thread: gemm.hpp's kernel, without gemm()'s team.
template <typename Scalar, bool TransA, bool TransB>
void serial_product(const ConstMatRef<Scalar>& A, const ConstMatRef<Scalar>& B, MatRef<Scalar> C, bool accumulate) {
  const Index K = TransA ? A.rows() : A.cols();
  eigen_assert((TransB ? B.cols() : B.rows()) == K && (TransA ? A.cols() : A.rows()) == C.rows() &&
               (TransB ? B.rows() : B.cols()) == C.cols());
  gemm_serial<Scalar, TransA, TransB>(C.rows(), C.cols(), K, A.data(), A.outerStride(), B.data(), B.outerStride(),
                                      C.data(), C.outerStride(), accumulate);
}
}  // namespace detail

// Q, K, V: (HS, T) -> Y: (HS, T) and lse: (T) the log-sum-exp L of each query's scaled scores.
// scratch: (kFlashKeyBlock, ≥ flash_scratch_cols(T)), this thread's. ASSIGNS Y and lse.
template <typename Scalar>
void flash_attention_forward(const ConstMatRef<Scalar>& Q, const ConstMatRef<Scalar>& K, const ConstMatRef<Scalar>& V,
                             MatRef<Scalar> Y, Eigen::Ref<Vec<Scalar>> lse, MatRef<Scalar> scratch) {
  const Index HS = Q.rows(), T = Q.cols();
  eigen_assert(K.rows() == HS && V.rows() == HS && Y.rows() == HS && K.cols() == T && V.cols() == T &&
               Y.cols() == T && lse.size() == T && scratch.rows() == kFlashKeyBlock &&
               scratch.cols() >= flash_scratch_cols(T));
  const Scalar s = Scalar(1) / std::sqrt(Scalar(HS));
  // m and l of the query block's columns, past S_b in the scratch (contiguous: one thread's slot of
  // a matrix of Bk rows), Bq values each.
  eigen_assert(scratch.outerStride() == kFlashKeyBlock);
  Eigen::Map<Vec<Scalar>> m(scratch.col(kFlashQueryBlock).data(), kFlashQueryBlock);
  Eigen::Map<Vec<Scalar>> l(m.data() + kFlashQueryBlock, kFlashQueryBlock);
  for (Index j0 = 0; j0 < T; j0 += kFlashQueryBlock) {
    const Index j1 = std::min(T, j0 + kFlashQueryBlock);
    for (Index i0 = 0; i0 < j1; i0 += kFlashKeyBlock) {
      const Index i1 = std::min(j1, i0 + kFlashKeyBlock), nk = i1 - i0;
      const Index q0 = std::max(j0, i0), nq = j1 - q0;  // the queries that see a key of this block
      auto Sb = scratch.block(0, 0, nk, nq);
      detail::serial_product<Scalar, true, false>(K.middleCols(i0, nk), Q.middleCols(q0, nq), Sb, false);
      const bool first = i0 == 0;  // every query sees key block 0
      for (Index c = 0; c < nq; ++c) {
        const Index q = q0 + c, mc = q - j0;      // the query and its m, l
        const Index seen = std::min(nk, q - i0 + 1);  // keys i0 … q, at least one
        auto p = Sb.col(c).head(seen);
        const Scalar m_new = first ? s * p.maxCoeff() : std::max(m(mc), s * p.maxCoeff());
        p = (p.array() * s - m_new).exp().matrix();
        Sb.col(c).tail(nk - seen).setZero();
        const Scalar sum = p.sum();
        if (first) {
          l(mc) = sum;
        } else {
          const Scalar alpha = std::exp(m(mc) - m_new);
          l(mc) = alpha * l(mc) + sum;
          if (alpha != Scalar(1)) Y.col(q) *= alpha;
        }
        m(mc) = m_new;
      }
      detail::serial_product<Scalar, false, false>(V.middleCols(i0, nk), Sb, Y.middleCols(q0, nq), !first);
    }
    for (Index q = j0; q < j1; ++q) {
      Y.col(q) /= l(q - j0);
      lse(q) = m(q - j0) + std::log(l(q - j0));
    }
  }
}

// Backward of flash_attention_forward, from its Y and lse and dY: (HS, T) the gradient of Y.
// delta: (T) scratch for D. scratch: (kFlashKeyBlock, ≥ flash_scratch_cols(T)), this thread's.
// ASSIGNS dQ, dK, dV: (HS, T).
template <typename Scalar>
void flash_attention_backward(const ConstMatRef<Scalar>& Q, const ConstMatRef<Scalar>& K,
                              const ConstMatRef<Scalar>& V, const ConstMatRef<Scalar>& Y,
                              const Eigen::Ref<const Vec<Scalar>>& lse, const ConstMatRef<Scalar>& dY,
                              MatRef<Scalar> dQ, MatRef<Scalar> dK, MatRef<Scalar> dV, Eigen::Ref<Vec<Scalar>> delta,
                              MatRef<Scalar> scratch) {
  const Index HS = Q.rows(), T = Q.cols();
  eigen_assert(dY.rows() == HS && dY.cols() == T && Y.rows() == HS && Y.cols() == T && lse.size() == T &&
               delta.size() == T && dQ.cols() == T && dK.cols() == T && dV.cols() == T &&
               scratch.rows() == kFlashKeyBlock && scratch.cols() >= flash_scratch_cols(T));
  const Scalar s = Scalar(1) / std::sqrt(Scalar(HS));
  for (Index i = 0; i < T; ++i) delta(i) = dY.col(i).dot(Y.col(i));
  for (Index i0 = 0; i0 < T; i0 += kFlashKeyBlock) {
    const Index i1 = std::min(T, i0 + kFlashKeyBlock), nk = i1 - i0, n = T - i0;
    const auto Kb = K.middleCols(i0, nk);
    const auto Vb = V.middleCols(i0, nk);
    const auto Qs = Q.rightCols(n);
    const auto dYs = dY.rightCols(n);
    auto P = scratch.block(0, 0, nk, n);
    auto dS = scratch.block(0, n, nk, n);
    detail::serial_product<Scalar, true, false>(Kb, Qs, P, false);
    for (Index c = 0; c < n; ++c) {
      const Index seen = std::min(nk, c + 1);  // query i0 + c sees keys i0 … i0 + c of this block
      auto p = P.col(c);
      p.head(seen) = (p.head(seen).array() * s - lse(i0 + c)).exp().matrix();
      p.tail(nk - seen).setZero();
    }
    detail::serial_product<Scalar, false, true>(dYs, P, dV.middleCols(i0, nk), false);
    detail::serial_product<Scalar, true, false>(Vb, dYs, dS, false);
    for (Index c = 0; c < n; ++c) {
      dS.col(c) = (s * P.col(c).array() * (dS.col(c).array() - delta(i0 + c))).matrix();
    }
    detail::serial_product<Scalar, false, true>(Qs, dS, dK.middleCols(i0, nk), false);
    detail::serial_product<Scalar, false, false>(Kb, dS, dQ.rightCols(n), i0 > 0);
  }
}

}  // namespace seqgen
