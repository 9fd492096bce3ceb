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
// Forward. The queries are cut into blocks of Bq = kFlashQueryBlock columns; query block [j0, j1)
// meets the keys [0, j1) in blocks of Bk = kFlashKeyBlock, the last one ending at j1, so only the
// diagonal block holds masked scores. For each key block [i0, i1), with running m (max of s·S)
// and l (sum of exponentials) per query column i:
//   S_b = K[:, i0..i1)ᵀ Q[:, j0..j1)                     (Bk, Bq) scratch
//   m' = max(m, max_j s·S_b[j, i])      α = exp(m − m')   P_b[j, i] = exp(s·S_b[j, i] − m'), 0 if j > i
//   l  = α·l + Σ_j P_b[j, i]            Y[:, i] = α·Y[:, i] + V[:, i0..i1) P_b[:, i]      m = m'
// and at the end Y[:, i] /= l, L[i] = m + log l.
//
// Backward, with dY (HS, T) the gradient of Y:
//   D[i] = dY[:, i] · Y[:, i]                                  (T), first
//   then for each key block [i0, i1), over the query blocks [j0, j1) that see it (j1 > i0):
//     S_b = K_bᵀ Q_q,  P_b = exp(s·S_b − L[q]) (masked)        (Bk, Bq), recomputed
//     dV_b += dY_q P_bᵀ                                       (HS, Bk)
//     dP_b = V_bᵀ dY_q                                         (Bk, Bq)
//     dS_b = s · P_b ⊙ (dP_b − 1 D[q]ᵀ)                         (Bk, Bq) softmax backward, s folded in
//     dK_b += Q_q dS_bᵀ                                        (HS, Bk)
//     dQ_q += K_b dS_b                                         (HS, Bq)
// dK_b and dV_b are complete when their key block ends; dQ is accumulated over the key blocks.
//
// Memory: O(T) per (sequence, head) (L and D) and a scratch of (Bk, 2·Bq) per thread, instead of
// the (T, T) P the reference keeps. Work: forward exponentiates each score once, as the reference
// does, and backward once more; backward has one product more (S recomputed).
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

constexpr Index kFlashQueryBlock = 64;  // Bq
constexpr Index kFlashKeyBlock = 64;    // Bk
// The scratch one thread needs: (kFlashKeyBlock, kFlashScratchCols).
constexpr Index kFlashScratchCols = 2 * kFlashQueryBlock;
// Key blocks then start on multiples of Bq, so the key block a query block's diagonal falls in
// starts at or before the query block (every query sees at least one key of it), and the scratch's
// columns Bq and Bq + 1 can hold m and l of Bq queries.
static_assert(kFlashKeyBlock % kFlashQueryBlock == 0, "key blocks are whole query blocks");

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
// scratch: (kFlashKeyBlock, kFlashScratchCols), this thread's. ASSIGNS Y and lse.
template <typename Scalar>
void flash_attention_forward(const ConstMatRef<Scalar>& Q, const ConstMatRef<Scalar>& K, const ConstMatRef<Scalar>& V,
                             MatRef<Scalar> Y, Eigen::Ref<Vec<Scalar>> lse, MatRef<Scalar> scratch) {
  const Index HS = Q.rows(), T = Q.cols();
  eigen_assert(K.rows() == HS && V.rows() == HS && Y.rows() == HS && K.cols() == T && V.cols() == T &&
               Y.cols() == T && lse.size() == T && scratch.rows() >= kFlashKeyBlock &&
               scratch.cols() >= kFlashScratchCols);
  const Scalar s = Scalar(1) / std::sqrt(Scalar(HS));
  // m and l of the query block's columns live in two columns of the scratch past S_b.
  auto m = scratch.col(kFlashQueryBlock).head(kFlashQueryBlock);
  auto l = scratch.col(kFlashQueryBlock + 1).head(kFlashQueryBlock);
  for (Index j0 = 0; j0 < T; j0 += kFlashQueryBlock) {
    const Index j1 = std::min(T, j0 + kFlashQueryBlock), nq = j1 - j0;
    const auto Qq = Q.middleCols(j0, nq);
    auto Yq = Y.middleCols(j0, nq);
    for (Index i0 = 0; i0 < j1; i0 += kFlashKeyBlock) {
      const Index i1 = std::min(j1, i0 + kFlashKeyBlock), nk = i1 - i0;
      auto Sb = scratch.block(0, 0, nk, nq);
      detail::serial_product<Scalar, true, false>(K.middleCols(i0, nk), Qq, Sb, false);
      const bool first = i0 == 0;
      for (Index c = 0; c < nq; ++c) {
        const Index seen = std::min(nk, j0 + c - i0 + 1);  // keys i0 … j0 + c; ≥ 1 as i0 ≤ j0
        auto p = Sb.col(c).head(seen);
        const Scalar m_new = first ? s * p.maxCoeff() : std::max(m(c), s * p.maxCoeff());
        p = (p.array() * s - m_new).exp().matrix();
        Sb.col(c).tail(nk - seen).setZero();
        const Scalar sum = p.sum();
        if (first) {
          l(c) = sum;
        } else {
          const Scalar alpha = std::exp(m(c) - m_new);
          l(c) = alpha * l(c) + sum;
          if (alpha != Scalar(1)) Yq.col(c) *= alpha;
        }
        m(c) = m_new;
      }
      detail::serial_product<Scalar, false, false>(V.middleCols(i0, nk), Sb, Yq, !first);
    }
    for (Index c = 0; c < nq; ++c) {
      Yq.col(c) /= l(c);
      lse(j0 + c) = m(c) + std::log(l(c));
    }
  }
}

// Backward of flash_attention_forward, from its Y and lse and dY: (HS, T) the gradient of Y.
// delta: (T) scratch for D. scratch: (kFlashKeyBlock, kFlashScratchCols), this thread's.
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
               scratch.rows() >= kFlashKeyBlock && scratch.cols() >= kFlashScratchCols);
  const Scalar s = Scalar(1) / std::sqrt(Scalar(HS));
  for (Index i = 0; i < T; ++i) delta(i) = dY.col(i).dot(Y.col(i));
  dQ.setZero();
  for (Index i0 = 0; i0 < T; i0 += kFlashKeyBlock) {
    const Index i1 = std::min(T, i0 + kFlashKeyBlock), nk = i1 - i0;
    const auto Kb = K.middleCols(i0, nk);
    const auto Vb = V.middleCols(i0, nk);
    auto dKb = dK.middleCols(i0, nk);
    auto dVb = dV.middleCols(i0, nk);
    bool first = true;
    // Query blocks start on multiples of Bq; the first that sees key i0 is the one holding it.
    for (Index j0 = i0 / kFlashQueryBlock * kFlashQueryBlock; j0 < T; j0 += kFlashQueryBlock) {
      const Index j1 = std::min(T, j0 + kFlashQueryBlock), nq = j1 - j0;
      const auto Qq = Q.middleCols(j0, nq);
      const auto dYq = dY.middleCols(j0, nq);
      auto Pb = scratch.block(0, 0, nk, nq);
      auto dSb = scratch.block(0, kFlashQueryBlock, nk, nq);
      detail::serial_product<Scalar, true, false>(Kb, Qq, Pb, false);
      for (Index c = 0; c < nq; ++c) {
        const Index seen = std::clamp<Index>(j0 + c - i0 + 1, 0, nk);  // keys i0 … j0 + c of this block
        auto p = Pb.col(c);
        p.head(seen) = (p.head(seen).array() * s - lse(j0 + c)).exp().matrix();
        p.tail(nk - seen).setZero();
      }
      detail::serial_product<Scalar, false, true>(dYq, Pb, dVb, !first);
      detail::serial_product<Scalar, true, false>(Vb, dYq, dSb, false);
      for (Index c = 0; c < nq; ++c) {
        dSb.col(c) = (s * Pb.col(c).array() * (dSb.col(c).array() - delta(j0 + c))).matrix();
      }
      detail::serial_product<Scalar, false, true>(Qq, dSb, dKb, !first);
      detail::serial_product<Scalar, false, false>(Kb, dSb, dQ.middleCols(j0, nq), true);
      first = false;
    }
  }
}

}  // namespace seqgen
