// A GPT-2 transformer block: pre-LayerNorm, residual connections, dropout on each branch.
//
//   x1 = x  + Drop(Attn(LN1(x)))
//   y  = x1 + Drop(Mlp(LN2(x1)))          x, x1, y: (C, N), N = B·T
// Backward, with dy = ∂L/∂y (each residual passes its gradient through unchanged):
//   dx1 = dy + LN2'ᵀ Mlp'ᵀ Drop'(dy)
//   dx  = dx1 + LN1'ᵀ Attn'ᵀ Drop'(dx1)
// Dropout is the identity when !training or p = 0; in training the two masks are drawn from rng in
// forward order (attention branch, then MLP branch).
//
// Decoding: forward_cached runs the same block for N new tokens whose keys and values go to a KV
// cache (attention's forward_cached), on packed copies of the four weight matrices, by a thread
// team: x1 = x + Attn(LN1(x)), x1 + Mlp(LN2(x1)), in place in x. No dropout (inference).
//
// Memory: per token the cache keeps what backward reads, 9·C floats and the attention kernel's
// (q, k, v, the attention's output, x1, the MLP's hidden layer before GELU, and both LayerNorms'
// statistics), and with dropout active the branch outputs and the masks. The LayerNorm outputs are
// computed again in backward from the statistics (llm.c's recompute), into buffers that are free
// at that moment: LN2(x1) into dx1 before dx1 is written, LN1(x) into dx. The rest is scratch
// (backward's gradients, GELU's output, the kernels' work space): Cache::take_scratch hands it
// from one block's cache to the next, so a model of L blocks holds one set of it rather than L
// (Gpt does this).
//
// Contract: forward ASSIGNS y and the cache. backward ADDS into every Param::grad and ASSIGNS dx;
// it reads the same x forward was given, with the same `training`. dx may be dy, not x.
#pragma once

#include <string>

#include "seqgen/core/error.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/layers/attention.hpp"
#include "seqgen/layers/dropout.hpp"
#include "seqgen/layers/gelu.hpp"
#include "seqgen/layers/layernorm.hpp"

namespace seqgen {

template <typename Scalar>
struct TransformerBlock {
  std::string name;
  LayerNorm<Scalar> ln1;
  CausalSelfAttention<Scalar> attn;
  LayerNorm<Scalar> ln2;
  Mlp<Scalar> mlp;
  Dropout<Scalar> drop;

  struct Cache {
    typename LayerNorm<Scalar>::Cache ln1, ln2;
    typename CausalSelfAttention<Scalar>::Cache attn;
    typename Mlp<Scalar>::Cache mlp;
    typename Dropout<Scalar>::Cache drop1, drop2;
    Mat<Scalar> x1;        // (C, N) residual stream after the attention branch
    // The branch outputs before dropout, (C, N) each: only while dropout is active (otherwise
    // the branches write x1 and y directly).
    Mat<Scalar> attn_out, mlp_out;
    // scratch
    Mat<Scalar> dx1;       // (C, N) in backward LN2(x1) again, then the gradient of x1
    Mat<Scalar> dbranch;   // (C, N) gradient of a branch output, with dropout active
    Mat<Scalar> norm;      // (C, N) in forward a LayerNorm's output, in backward its gradient

    // Trades this cache's scratch, its layers' included, for `other`'s (the buffers, not their
    // contents). Blocks run one after another can then share one set: before a block runs
    // (forward or backward), its cache takes the scratch from the cache of the block that ran last.
    void take_scratch(Cache& other) {
      attn.take_scratch(other.attn);
      mlp.take_scratch(other.mlp);
      dx1.swap(other.dx1);
      dbranch.swap(other.dbranch);
      norm.swap(other.norm);
    }
  };

  TransformerBlock() = default;
  TransformerBlock(std::string name_, Index C, Index NH, Rng& rng, double dropout = 0)
      : name(std::move(name_)),
        ln1(join_name(name, "ln1"), C),
        attn(join_name(name, "attn"), C, NH, rng),
        ln2(join_name(name, "ln2"), C),
        mlp(join_name(name, "mlp"), C, rng),
        drop(dropout) {}

  Index channels() const { return ln1.dim(); }

  // x: (C, B·T) -> y: (C, B·T)
  void forward(const ConstMatRef<Scalar>& x, Index B, Index T, Mat<Scalar>& y, Cache& cache, Rng& rng,
               bool training) const {
    check_input(x, B, T);
    const bool dropout = drop.active(training);
    ln1.forward(x, cache.norm, cache.ln1);
    if (dropout) {
      attn.forward(cache.norm, B, T, cache.attn_out, cache.attn);
      drop.forward(cache.attn_out, cache.x1, cache.drop1, rng, training);
    } else {
      attn.forward(cache.norm, B, T, cache.x1, cache.attn);
    }
    parallel_add<Scalar>(cache.x1, x);
    ln2.forward(cache.x1, cache.norm, cache.ln2);
    if (dropout) {
      mlp.forward(cache.norm, cache.mlp_out, cache.mlp);
      drop.forward(cache.mlp_out, y, cache.drop2, rng, training);
    } else {
      mlp.forward(cache.norm, y, cache.mlp);
    }
    parallel_add<Scalar>(y, cache.x1);
  }

  // The block's weight matrices packed for forward_cached. Pack again after the weights change.
  struct Packed {
    typename CausalSelfAttention<Scalar>::Packed attn;
    typename Mlp<Scalar>::Packed mlp;
  };
  void pack(Packed& w) const {
    attn.pack(w.attn);
    mlp.pack(w.mlp);
  }

  // The scratch of forward_cached, N columns each.
  struct CachedScratch {
    MatRef<Scalar> ln;      // (C, N) LayerNorm output, this thread's own (C values per token: every
                            // thread normalises all N tokens rather than wait for one thread to)
    MatRef<Scalar> qkv;     // (3C, N) shared by the team
    MatRef<Scalar> att;     // (C, N) shared by the team
    MatRef<Scalar> hidden;  // (4C, N) shared by the team
    MatRef<Scalar> scores;  // (≥ the most keys of a token, team.size()) one column per thread
  };

  // x: (C, N) residual stream of N new tokens -> the block's output, in place. Run by every
  // thread of `team`; kv_of as for CausalSelfAttention::forward_cached. Ends with a barrier.
  template <class KvOf>
  void forward_cached(const Packed& w, MatRef<Scalar> x, const CachedScratch& scratch, const Team& team,
                      KvOf&& kv_of) const {
    ln1.forward_into(x, scratch.ln);
    attn.forward_cached(w.attn, scratch.ln, scratch.qkv, scratch.att, scratch.scores, x, team, kv_of);
    ln2.forward_into(x, scratch.ln);
    mlp.forward_packed(w.mlp, scratch.ln, scratch.hidden, x, team);
  }

  // x, dy: (C, B·T) -> dx: (C, B·T)
  void backward(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& dy, Index B, Index T, Cache& cache,
                Mat<Scalar>& dx, bool training) {
    check_input(x, B, T);
    check<ShapeError>(dy.rows() == x.rows() && dy.cols() == x.cols(), "TransformerBlock '", name, "': dy is (",
                      dy.rows(), ", ", dy.cols(), "), expected (", x.rows(), ", ", x.cols(), ")");
    check<ShapeError>(cache.x1.cols() == x.cols(), "TransformerBlock '", name, "': cache holds ", cache.x1.cols(),
                      " columns, expected ", x.cols(), " (call forward with this x first)");
    // The gradient of a branch's output from the gradient after its dropout (the same without).
    auto through_dropout = [&](const ConstMatRef<Scalar>& d, const typename Dropout<Scalar>::Cache& mask) {
      if (!drop.active(training)) return d;
      drop.backward(d, mask, cache.dbranch, training);
      return ConstMatRef<Scalar>(cache.dbranch);
    };
    // MLP branch: dx1 = dy + (gradient through LN2, Mlp, Drop). LN2(x1) is computed again into
    // dx1, which LN2's backward then overwrites (it reads x1, not LN2(x1)).
    ln2.forward_again(cache.x1, cache.ln2, cache.dx1);
    mlp.backward(cache.dx1, through_dropout(dy, cache.drop2), cache.mlp, cache.norm);
    ln2.backward(cache.x1, cache.norm, cache.ln2, cache.dx1);
    parallel_add<Scalar>(cache.dx1, dy);
    // attention branch: dx = dx1 + (gradient through LN1, Attn, Drop), LN1(x) again into dx.
    ln1.forward_again(x, cache.ln1, dx);
    attn.backward(dx, through_dropout(cache.dx1, cache.drop1), B, T, cache.attn, cache.norm);
    ln1.backward(x, cache.norm, cache.ln1, dx);
    parallel_add<Scalar>(dx, cache.dx1);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    ln1.for_each_param(visit);
    attn.for_each_param(visit);
    ln2.for_each_param(visit);
    mlp.for_each_param(visit);
  }

 private:
  void check_input(const ConstMatRef<Scalar>& x, Index B, Index T) const {
    check<ShapeError>(x.rows() == channels(), "TransformerBlock '", name, "': input has ", x.rows(),
                      " rows, expected ", channels(), " (C)");
    check<ShapeError>(is_product(x.cols(), B, T), "TransformerBlock '", name, "': input has ", x.cols(),
                      " columns, expected B*T = ", B, "*", T, " = ", product(B, T));
  }
};

}  // namespace seqgen
