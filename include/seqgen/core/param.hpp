// A trainable parameter: its value, its gradient and its name.
//
// Names follow PyTorch's module naming ("blocks.0.attn.qkv.weight") so that a seqgen model's
// weights map one-to-one onto the equivalent PyTorch module. Layers and models expose their
// parameters through
//   template <class Visit> void for_each_param(Visit&& visit);   // visit(Param<Scalar>&)
// which is all an optimizer, a checkpoint or a gradient check needs.
#pragma once

#include <string>
#include <utility>

#include "seqgen/core/tensor.hpp"

namespace seqgen {

template <typename Scalar>
struct Param {
  std::string name;
  Mat<Scalar> value;  // vectors (biases, gains) are stored as (n, 1)
  Mat<Scalar> grad;   // same shape as value; backward passes ADD into it
  // Whether AdamW/SGD weight decay applies. By default matrices decay and vectors (biases, gains)
  // do not; Embedding turns it off for its table, so the embeddings do not decay either. That is
  // minGPT's grouping (nanoGPT decays every tensor of two or more dimensions, embeddings
  // included). Checkpoints store the flags. Users may flip it per parameter.
  bool decay = false;

  Param() = default;
  Param(std::string name_, Index rows, Index cols)
      : name(std::move(name_)),
        value(Mat<Scalar>::Zero(rows, cols)),
        grad(Mat<Scalar>::Zero(rows, cols)),
        decay(rows > 1 && cols > 1) {}

  Index size() const { return value.size(); }
  void zero_grad() { grad.setZero(); }
};

// Joins a module prefix and a member name the way PyTorch does: join("blocks.0", "ln1") == "blocks.0.ln1".
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Sets every gradient of a layer or model to zero.
template <typename Module>
void zero_grad(Module& module) {
  module.for_each_param([](auto& p) { p.zero_grad(); });
}

// Total number of scalar parameters in a layer or model.
template <typename Module>
Index count_params(Module& module) {
  Index n = 0;
  module.for_each_param([&](auto& p) { n += p.size(); });
  return n;
}

}  // namespace seqgen
