// Causal multi-head self-attention, as GPT-2's (Vaswani et al., 2017; Radford et al., 2019).
//
//   x: (C, N), N = B·T      NH heads of size HS = C / NH
//   qkv = W_qkv x + b_qkv                                    (3C, N)
//     rows [0, C) are Q, [C, 2C) are K, [2C, 3C) are V; head h owns rows h·HS .. (h+1)·HS − 1 of
//     each, so token (b, t) of head h is column b·T + t of three (HS)-row slices of qkv. This is
//     the layout of PyTorch's c_attn split into q, k, v and .view(B, T, NH, HS); a KV cache for
//     decoding can keep rows [C, 3C) of each past token's column as they are.
//   For each sequence b and head h, with Q, K, V the (HS, T) blocks of that sequence and head:
//     S = Kᵀ Q / √HS                        (T, T): S[j, i] = score of key j for query i
//     P[:, i] = softmax(S[0..i, i]), P[j, i] = 0 for j > i     (causal: query i sees keys j ≤ i)
//     Y = V P                               (HS, T): column i = Σ_j P[j, i] V[:, j]
//   y = W_proj Y + b_proj                                    (C, N)
// One column per query, so each softmax runs down a contiguous column; P is upper triangular.
//
// Backward, per (b, h), with dY from proj's backward:
//   dV = dY Pᵀ                                   (HS, T)
//   dP = Vᵀ dY                                   (T, T), only the upper triangle is needed
//   dS = P ⊙ (dP − 1 · colsum(P ⊙ dP))          softmax backward, column by column
//   dQ = K dS / √HS      dK = Q dSᵀ / √HS        (HS, T)
// The products skip the masked entries by blocks. The queries are cut into blocks of kBlock
// columns, and query block [j0, j1) meets only keys [0, j1): S, Y, dP and dQ of that block are
// products over j1 rather than T keys. Key block [i0, i1) is met only by queries [i0, T): dV and
// dK of that block are products over T − i0 queries. With T = 4·kBlock that is 5/8 of the full
// T² work (the exact triangle is 1/2). Inside a diagonal block the masked entries of P and dS
// are zero, so the products read them as they are. The products are seqgen's gemm, which
// allocates nothing (an Eigen triangular product of this size would).
//
// Decoding (a second entry point on the same maths). A new token at position p of its sequence
// attends over the keys and values of positions 0 … p, which a KV cache holds from earlier passes
// (rows [C, 3C) of each past token's qkv column, as they are):
//   attend_cached(h, q, kv, scores, y)   head h of one query: y_h = V_h softmax(K_hᵀ q_h / √HS)
//   forward_cached(w, x, …, y, team, kv_of)   the whole layer for N new tokens, run by a thread team
//     (parallel.hpp's Team) on packed copies of W_qkv and W_proj: qkv = W_qkv x + b_qkv, each
//     token's k and v into its cache slot, attend_cached for every (token, head), y += W_proj Y + b.
// The softmax is the one forward() runs (detail::scaled_softmax), so a cached step gives column p
// of forward() to rounding (the products sum in another order).
//
// Two kernels compute the same attention (Y of every (b, h)), chosen by `kernel`:
//   reference  the products above, keeping P, (T, T) per (b, h): T·NH floats per token
//   flash      flash_attention.hpp: blocks of queries against blocks of keys with an online softmax,
//              keeping only each query's log-sum-exp, and a backward that recomputes P blockwise
//              (FlashAttention-2): NH floats per token (2·NH with backward's D), so the cache is
//              linear in T
//   automatic  (the default) flash for T ≥ kFlashMinT, the reference below it
// The decoder's attend_cached is the reference softmax on one query.
//
// Contract: forward ASSIGNS y and the cache (qkv, Y, and P or the log-sum-exps). backward ADDS into
// every Param::grad and ASSIGNS dx; it reads the same x forward was given, and uses the kernel
// forward used. The cache also holds backward's scratch, so a Cache reused with the same B, T
// never reallocates.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/flash_attention.hpp"
#include "seqgen/layers/linear.hpp"

namespace seqgen {

namespace detail {
// p = softmax(scale · p) over one query's scores, scale > 0 (so the max commutes with it).
template <typename Scalar>
void scaled_softmax(Eigen::Ref<Vec<Scalar>> p, Scalar scale) {
  const Scalar m = p.maxCoeff();
  p = ((p.array() - m) * scale).exp().matrix();
  p /= p.sum();
}
}  // namespace detail

// Which kernel CausalSelfAttention runs for training (see the header comment).
enum class AttentionKernel { automatic, reference, flash };

template <typename Scalar>
struct CausalSelfAttention {
  std::string name;
  Index n_head = 0;
  Linear<Scalar> qkv;   // C -> 3C
  Linear<Scalar> proj;  // C -> C
  AttentionKernel kernel = AttentionKernel::automatic;

  struct Cache {
    Mat<Scalar> qkv;   // (3C, N)
    Mat<Scalar> y;     // (C, N) attention output before proj
    bool flash = false;  // the kernel forward ran
    Mat<Scalar> att;   // reference: (T, T·B·NH), P of (b, h) in columns (b·NH + h)·T .. + T − 1
    Mat<Scalar> lse;   // flash: (T, B·NH), column b·NH + h the log-sum-exp L of each query
    // backward scratch
    Mat<Scalar> dy;    // (C, N) gradient of y
    Mat<Scalar> dqkv;  // (3C, N)
    Mat<Scalar> dp;    // reference: (T, T · threads): dP, then dS, one (T, T) block per thread
    Mat<Scalar> delta;  // flash: (T, B·NH), D = rowsum(dY ⊙ Y) of each query
    Mat<Scalar> flash_scratch;  // flash: (kFlashKeyBlock, ≥ flash_scratch_cols(T) · threads): S_b, P_b, dS_b

    // Trades this cache's scratch for `other`'s (the buffers, not their contents), so that layers
    // run one after another can share one set (TransformerBlock::Cache::take_scratch).
    void take_scratch(Cache& other) {
      dy.swap(other.dy);
      dqkv.swap(other.dqkv);
      dp.swap(other.dp);
      delta.swap(other.delta);
      flash_scratch.swap(other.flash_scratch);
    }
  };

  CausalSelfAttention() = default;
  CausalSelfAttention(std::string name_, Index C, Index NH, Rng& rng)
      : name(std::move(name_)),
        n_head(NH),
        qkv(join_name(name, "qkv"), checked_channels(name, C, NH), 3 * C, rng),
        proj(join_name(name, "proj"), C, C, rng) {}

  // Queries per block of the causal products (see the header comment).
  static constexpr Index kBlock = 64;
  // The shortest T for which `automatic` runs the flash kernel. Measured on a shared 2-core AVX2
  // machine (C = 256, NH = 4, forward + backward, one thread): flash is 3–6% slower up to T = 512
  // (its backward recomputes S, one product more), even at T = 1024, and about 1.2× faster at
  // T = 2048. From T = 512 the memory decides: the reference's P is then NH·T = 2048 floats per
  // token and layer, and a GPT of C = 64, NH = 8 at T = 512, B = 4 peaks at 805 MiB with it and
  // 227 MiB with the flash kernel (tests/memory_test.sh's gpt_long).
  static constexpr Index kFlashMinT = 512;

  static bool flash_by_default(Index T) { return T >= kFlashMinT; }
  bool uses_flash(Index T) const {
    return kernel == AttentionKernel::flash || (kernel == AttentionKernel::automatic && flash_by_default(T));
  }

  Index channels() const { return proj.out_features(); }
  Index head_size() const { return channels() / n_head; }

  // x: (C, B·T) -> y: (C, B·T)
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, Mat<Scalar>& y, Cache& cache) const {
    check_input(x, B, T);
    const Index C = channels(), NH = n_head;
    qkv.forward(x, cache.qkv);
    ensure_shape(cache.y, C, B * T);
    cache.flash = uses_flash(T);
    if (cache.flash) {
      ensure_shape(cache.att, 0, 0);  // a cache that ran the reference before gives back its P
      ensure_shape(cache.dp, 0, 0);
      forward_flash(B, T, cache);
    } else {
      ensure_shape(cache.lse, 0, 0);
      ensure_shape(cache.att, T, T * B * NH);
      forward_reference(B, T, cache);
    }
    proj.forward(cache.y, y);
  }


  // Copies of W_qkv and W_proj for forward_cached. Pack again after the weights change.
  struct Packed {
    PackedMatrix<Scalar> qkv, proj;
  };
  void pack(Packed& w) const {
    qkv.pack(w.qkv);
    proj.pack(w.proj);
  }

  // Head h of one query against cached keys and values:
  //   q: (C, 1) the token's queries (rows [0, C) of its qkv column)
  //   kv: (2C, P) keys (rows [0, C)) and values (rows [C, 2C)) of positions 0 … P − 1
  //   scores: (P, 1) scratch            y: (C, 1), of which this writes rows [h·HS, (h+1)·HS) only
  void attend_cached(Index h, const ConstMatRef<Scalar>& q, const ConstMatRef<Scalar>& kv, MatRef<Scalar> scores,
                     MatRef<Scalar> y) const {
    const Index C = channels(), HS = head_size(), P = kv.cols();
    eigen_assert(h >= 0 && h < n_head && q.rows() == C && kv.rows() == 2 * C && P > 0 && scores.rows() == P &&
                 y.rows() == C);
    gemm<Scalar>(kv.block(h * HS, 0, HS, P), true, q.middleRows(h * HS, HS), false, scores, false);  // K_hᵀ q_h
    detail::scaled_softmax<Scalar>(scores.col(0), Scalar(1) / std::sqrt(Scalar(HS)));
    gemm<Scalar>(kv.block(C + h * HS, 0, HS, P), false, scores, false, y.middleRows(h * HS, HS), false);
  }

  // A decoding pass of N new tokens, run by every thread of `team`; y += the layer's output, the
  // residual stream of a block. w: pack() of this layer.
  //   x: (C, N) input (LN1 of the residual)      y: (C, N) residual stream, added into
  //   qkv: (3C, N), att: (C, N) scratch, shared by the team
  //   scores: (≥ the most keys of a token, team.size()) scratch, one column per thread
  //   kv_of(n): the (2C, p + 1) block of token n's cache for positions 0 … p of its sequence,
  //     p its position; the last column is where its own key and value go
  // Ends with a barrier: on return, y is complete for the whole team.
  template <class KvOf>
  void forward_cached(const Packed& w, const ConstMatRef<Scalar>& x, MatRef<Scalar> qkv_out, MatRef<Scalar> att,
                      MatRef<Scalar> scores, MatRef<Scalar> y, const Team& team, KvOf&& kv_of) const {
    const Index C = channels(), N = x.cols();
    check<ShapeError>(y.rows() == C && y.cols() == N && att.rows() == C && att.cols() == N &&
                          scores.cols() >= team.size(),
                      "CausalSelfAttention '", name, "': forward_cached got y (", y.rows(), ", ", y.cols(), "), att (",
                      att.rows(), ", ", att.cols(), ") and ", scores.cols(), " score columns, expected (", C, ", ", N,
                      "), (", C, ", ", N, ") and at least ", team.size());
    // This thread's rows of k and v (qkv rows C … 3C − 1) go to the cache; a barrier, and every
    // thread may read the whole cache.
    const std::pair<Index, Index> rows = qkv.forward_packed(w.qkv, x, qkv_out, false, team);
    const Index r0 = std::max(C, rows.first), r1 = rows.second;
    for (Index n = 0; n < N && r0 < r1; ++n) {
      auto kv = kv_of(n);
      kv.col(kv.cols() - 1).segment(r0 - C, r1 - r0) = qkv_out.col(n).segment(r0, r1 - r0);
    }
    team.barrier();
    // The (token, head) pairs round-robin: tokens late in a prompt attend over more keys.
    auto s = scores.col(team.index());
    team.for_each(N * n_head, [&](Index i) {
      const Index n = i / n_head, h = i % n_head;
      const auto kv = kv_of(n);
      attend_cached(h, qkv_out.col(n).head(C), kv, s.head(kv.cols()), att.col(n));
    });
    proj.forward_packed(w.proj, att, y, true, team);
    team.barrier();
  }

  // x, dy: (C, B·T) -> dx: (C, B·T)
  void backward(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, Index B, Index T, Cache& cache,
                Mat<Scalar>& dx) {
    check_input(x, B, T);
    const Index C = channels(), NH = n_head, N = B * T;
    check<ShapeError>(dy.rows() == C && dy.cols() == N, "CausalSelfAttention '", name, "': dy is (", dy.rows(), ", ",
                      dy.cols(), "), expected (", C, ", ", N, ")");
    const Index cache_T = cache.flash ? cache.lse.rows() : cache.att.rows();
    const Index cache_BNH = cache.flash ? cache.lse.cols() : cache.att.cols() / std::max<Index>(cache_T, 1);
    check<ShapeError>(cache.qkv.cols() == N && cache_T == T && cache_BNH == B * NH, "CausalSelfAttention '", name,
                      "': cache is for ", cache.qkv.cols(), " tokens with T=", cache_T, ", expected B=", B, " T=", T,
                      " (call forward with this x first)");

    proj.backward(cache.y, dy, &cache.dy);
    ensure_shape(cache.dqkv, 3 * C, N);
    if (cache.flash) {
      backward_flash(B, T, cache);
    } else {
      backward_reference(B, T, cache);
    }
    qkv.backward(x, cache.dqkv, &dx);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    qkv.for_each_param(visit);
    proj.for_each_param(visit);
  }

 private:
  // One slot of flash_scratch_cols(T) columns per thread; kept when the thread count falls, so
  // switching counts does not reallocate.
  static void grow_flash_scratch(Index T, Cache& cache) {
    const Index cols = flash_scratch_cols(T) * num_threads();
    if (cache.flash_scratch.rows() != kFlashKeyBlock || cache.flash_scratch.cols() < cols) {
      cache.flash_scratch.resize(kFlashKeyBlock, cols);
    }
  }

  void forward_flash(Index B, Index T, Cache& cache) const {
    const Index C = channels(), NH = n_head, HS = head_size();
    ensure_shape(cache.lse, T, B * NH);
    grow_flash_scratch(T, cache);
    const Mat<Scalar>& qkv_ = cache.qkv;
    parallel_for(B * NH, worth_a_team(B * T * T * C), [&](Index bh) {
      const Index b = bh / NH, h = bh % NH;
      const Index slot = detail::scratch_slot(cache.flash_scratch.cols() / flash_scratch_cols(T));
      flash_attention_forward<Scalar>(qkv_.block(h * HS, b * T, HS, T), qkv_.block(C + h * HS, b * T, HS, T),
                                      qkv_.block(2 * C + h * HS, b * T, HS, T), cache.y.block(h * HS, b * T, HS, T),
                                      cache.lse.col(bh),
                                      cache.flash_scratch.middleCols(slot * flash_scratch_cols(T), flash_scratch_cols(T)));
    });
  }

  void forward_reference(Index B, Index T, Cache& cache) const {
    const Index C = channels(), NH = n_head, HS = head_size();
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(HS));
    const Mat<Scalar>& qkv_ = cache.qkv;
    parallel_for(B * NH, worth_a_team(B * T * T * C), [&](Index bh) {
      const Index b = bh / NH, h = bh % NH;
      const auto Q = qkv_.block(h * HS, b * T, HS, T);
      const auto K = qkv_.block(C + h * HS, b * T, HS, T);
      const auto V = qkv_.block(2 * C + h * HS, b * T, HS, T);
      auto P = cache.att.middleCols(bh * T, T);

      auto Y = cache.y.block(h * HS, b * T, HS, T);
      for (Index j0 = 0; j0 < T; j0 += kBlock) {  // unscaled S of query block [j0, j1) over keys [0, j1)
        const Index j1 = std::min(T, j0 + kBlock);
        gemm<Scalar>(K.leftCols(j1), true, Q.middleCols(j0, j1 - j0), false, P.block(0, j0, j1, j1 - j0), false);
      }
      for (Index i = 0; i < T; ++i) {
        detail::scaled_softmax<Scalar>(P.col(i).head(i + 1), scale);  // P[0..i, i] = softmax(scale · S[0..i, i])
        P.col(i).tail(T - 1 - i).setZero();
      }
      for (Index j0 = 0; j0 < T; j0 += kBlock) {  // Y of query block [j0, j1) = V[:, 0..j1) P[0..j1, j0..j1)
        const Index j1 = std::min(T, j0 + kBlock);
        gemm<Scalar>(V.leftCols(j1), false, P.block(0, j0, j1, j1 - j0), false, Y.middleCols(j0, j1 - j0), false);
      }
    });
  }

  void backward_flash(Index B, Index T, Cache& cache) const {
    const Index C = channels(), NH = n_head, HS = head_size();
    ensure_shape(cache.delta, T, B * NH);
    grow_flash_scratch(T, cache);
    const Mat<Scalar>& qkv_ = cache.qkv;
    const Mat<Scalar>& y_ = cache.y;
    const Mat<Scalar>& dy_ = cache.dy;
    parallel_for(B * NH, worth_a_team(B * T * T * C), [&](Index bh) {
      const Index b = bh / NH, h = bh % NH;
      const Index slot = detail::scratch_slot(cache.flash_scratch.cols() / flash_scratch_cols(T));
      flash_attention_backward<Scalar>(
          qkv_.block(h * HS, b * T, HS, T), qkv_.block(C + h * HS, b * T, HS, T),
          qkv_.block(2 * C + h * HS, b * T, HS, T), y_.block(h * HS, b * T, HS, T), cache.lse.col(bh),
          dy_.block(h * HS, b * T, HS, T), cache.dqkv.block(h * HS, b * T, HS, T),
          cache.dqkv.block(C + h * HS, b * T, HS, T), cache.dqkv.block(2 * C + h * HS, b * T, HS, T),
          cache.delta.col(bh), cache.flash_scratch.middleCols(slot * flash_scratch_cols(T), flash_scratch_cols(T)));
    });
  }

  void backward_reference(Index B, Index T, Cache& cache) const {
    const Index C = channels(), NH = n_head, HS = head_size();
    const Scalar scale = Scalar(1) / std::sqrt(Scalar(HS));
    ensure_shape(cache.dp, T, T * num_threads());

    const Mat<Scalar>& qkv_ = cache.qkv;
    const Mat<Scalar>& dY_all = cache.dy;
    parallel_for(B * NH, worth_a_team(B * T * T * C), [&](Index bh) {
      const Index b = bh / NH, h = bh % NH;
      const auto Q = qkv_.block(h * HS, b * T, HS, T);
      const auto K = qkv_.block(C + h * HS, b * T, HS, T);
      const auto V = qkv_.block(2 * C + h * HS, b * T, HS, T);
      const auto P = cache.att.middleCols(bh * T, T);
      const auto dY = dY_all.block(h * HS, b * T, HS, T);
      auto dQ = cache.dqkv.block(h * HS, b * T, HS, T);
      auto dK = cache.dqkv.block(C + h * HS, b * T, HS, T);
      auto dV = cache.dqkv.block(2 * C + h * HS, b * T, HS, T);
      auto dS = cache.dp.middleCols(T * detail::scratch_slot(cache.dp.cols() / T), T);  // this thread's (T, T)

      for (Index i0 = 0; i0 < T; i0 += kBlock) {  // dV of key block [i0, i1) over queries [i0, T)
        const Index w = std::min(kBlock, T - i0);
        gemm<Scalar>(dY.rightCols(T - i0), false, P.block(i0, i0, w, T - i0), true, dV.middleCols(i0, w), false);
      }
      for (Index j0 = 0; j0 < T; j0 += kBlock) {  // dP of query block [j0, j1) over keys [0, j1)
        const Index j1 = std::min(T, j0 + kBlock);
        gemm<Scalar>(V.leftCols(j1), true, dY.middleCols(j0, j1 - j0), false, dS.block(0, j0, j1, j1 - j0), false);
      }
      for (Index i = 0; i < T; ++i) {
        const auto p = P.col(i).head(i + 1);
        auto d = dS.col(i).head(i + 1);
        const Scalar dot = p.dot(d);
        d = (scale * p.array() * (d.array() - dot)).matrix();  // dS with the 1/√HS of S folded in
        dS.col(i).tail(T - 1 - i).setZero();  // masked: the block products below read these zeros
      }
      for (Index j0 = 0; j0 < T; j0 += kBlock) {  // dQ of query block [j0, j1) = K[:, 0..j1) dS[0..j1, j0..j1)
        const Index j1 = std::min(T, j0 + kBlock);
        gemm<Scalar>(K.leftCols(j1), false, dS.block(0, j0, j1, j1 - j0), false, dQ.middleCols(j0, j1 - j0), false);
      }
      for (Index i0 = 0; i0 < T; i0 += kBlock) {  // dK of key block [i0, i1) over queries [i0, T)
        const Index w = std::min(kBlock, T - i0);
        gemm<Scalar>(Q.rightCols(T - i0), false, dS.block(i0, i0, w, T - i0), true, dK.middleCols(i0, w), false);
      }
    });
  }

  static Index checked_channels(const std::string& name, Index C, Index NH) {
    check<ConfigError>(C > 0 && NH > 0, "CausalSelfAttention '", name, "': C and NH must be positive, got C=", C,
                       " NH=", NH);
    check<ConfigError>(C % NH == 0, "CausalSelfAttention '", name, "': C=", C, " is not divisible by NH=", NH);
    return C;
  }

  void check_input(const ConstMatRef<Scalar>& x, Index B, Index T) const {
    check<ShapeError>(x.rows() == channels(), "CausalSelfAttention '", name, "': input has ", x.rows(),
                      " rows, expected ", channels(), " (C)");
    check<ShapeError>(B > 0 && T > 0, "CausalSelfAttention '", name, "': B and T must be positive, got B=", B,
                      " T=", T);
    check<ShapeError>(is_product(x.cols(), B, T), "CausalSelfAttention '", name, "': input has ", x.cols(),
                      " columns, expected B*T = ", B, "*", T, " = ", product(B, T));
  }
};

}  // namespace seqgen
