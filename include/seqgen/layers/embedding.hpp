// Token embedding: a lookup table, one learned vector per token id.
//
//   ids: N tokens in [0, V)   W: (C, V)   y: (C, N)   y[:, n] = W[:, ids[n]]
// Backward, with dy = ∂L/∂y:
//   dW[:, ids[n]] += dy[:, n]   for every n (a token seen k times receives k columns)
// W is stored (C, V) so that each token's vector is a contiguous column: the transpose of
// PyTorch's nn.Embedding weight (V, C), and the same memory. It is also the layout SoftmaxHead
// takes, so a GPT can tie its output projection to this table.
//
// Contract: forward ASSIGNS y (resized if needed). backward ADDS into weight.grad; the ids have no
// gradient. No cache: backward reads the same ids forward was given.
#pragma once

#include <string>

#include "seqgen/core/error.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/core/parallel.hpp"

namespace seqgen {

template <typename Scalar>
struct Embedding {
  Param<Scalar> weight;  // (C, V)
  std::string name;

  Embedding() = default;
  // PyTorch's default initialisation for nn.Embedding: W ~ N(0, 1). The table is not weight-decayed,
  // as in minGPT (nanoGPT decays it); see Param::decay.
  Embedding(std::string name_, Index V, Index C, Rng& rng)
      : weight(join_name(name_, "weight"), C, V), name(std::move(name_)) {
    check<ConfigError>(V > 0 && C > 0, "Embedding '", name, "': sizes must be positive, got V=", V, " C=", C);
    normal_init(weight.value, rng, 1.0);
    weight.decay = false;
  }

  Index vocab_size() const { return weight.value.cols(); }
  Index dim() const { return weight.value.rows(); }

  // ids: N -> y: (C, N)
  void forward(TokenSpan ids, Mat<Scalar>& y) const {
    check_ids(ids);
    ensure_shape(y, dim(), ids.size);
    parallel_for(ids.size, worth_a_team(y.size()), [&](Index n) { y.col(n) = weight.value.col(ids[n]); });
  }

  // ids: N, dy: (C, N). Threads split the rows, not the tokens: two positions with the same id
  // add into the same column.
  void backward(TokenSpan ids, const ConstMatRef<Scalar>& dy) {
    check<ShapeError>(dy.rows() == dim() && dy.cols() == ids.size, "Embedding '", name, "': dy is (", dy.rows(), ", ",
                      dy.cols(), "), expected (", dim(), ", ", ids.size, ")");
    check_ids(ids);
    parallel_row_blocks(dim(), worth_a_team(dy.size()), [&](Index r0, Index r1) {
      for (Index n = 0; n < ids.size; ++n)
        weight.grad.col(ids[n]).segment(r0, r1 - r0) += dy.col(n).segment(r0, r1 - r0);
    });
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight);
  }

 private:
  // Every id is checked before any is used, so a bad batch leaves y and weight.grad untouched.
  void check_ids(TokenSpan ids) const {
    const Index V = vocab_size();
    for (Index n = 0; n < ids.size; ++n)
      check<IndexError>(ids[n] >= 0 && ids[n] < V, "Embedding '", name, "': token id ", ids[n], " at position ", n,
                        " is out of range [0, ", V, ")");
  }
};

}  // namespace seqgen
