// A trainable parameter: its value, its gradient and its name.
//
// Names follow PyTorch's module naming ("blocks.0.attn.qkv.weight") so that a seqgen model's
// weights map one-to-one onto the equivalent PyTorch module. Layers and models expose their
// parameters through
//   template <class Visit> void for_each_param(Visit&& visit);   // visit(Param<Scalar>&)
// which is all an optimizer, a checkpoint or a gradient check needs. Models add, through
// NamedParams below, a const for_each_param and a lookup by name.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "seqgen/core/error.hpp"
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

// What a model's backward may be given to report its progress: it calls ready(k) once the
// gradients of tensors k, k + 1, … (in for_each_param order) are final for this backward, with k
// decreasing from call to call and ending at 0. Backward runs the layers in reverse, and models
// visit their parameters from input to output, so the final gradients are always a suffix. Data
// parallelism starts reducing them while backward goes on (distributed/gradient_allreduce.hpp).
using GradientsReady = std::function<void(Index first_final_tensor)>;

// Sets every gradient of a layer or model to zero.
template <typename Module>
void zero_grad(Module& module) {
  module.for_each_param([](auto& p) { p.zero_grad(); });
}

// Number of parameter tensors of a layer or model.
template <typename Module>
Index count_tensors(Module& module) {
  Index n = 0;
  module.for_each_param([&](auto&) { ++n; });
  return n;
}

// Total number of scalar parameters in a layer or model.
template <typename Module>
Index count_params(Module& module) {
  Index n = 0;
  module.for_each_param([&](auto& p) { n += p.size(); });
  return n;
}

// What a model offers on top of its own for_each_param(visit): iteration over const parameters,
// and a lookup by name, as PyTorch users have named_parameters() and state_dict()[name]. A model
// derives from NamedParams<Model, Scalar> and writes `using NamedParams<...>::for_each_param;`
// next to its own, so both overloads are visible.
template <class Model, typename Scalar>
class NamedParams {
 public:
  // visit(const Param<Scalar>&) for every parameter, in for_each_param's order.
  template <class Visit>
  void for_each_param(Visit&& visit) const {
    // The model's visitor is non-const only because layers have one overload; nothing is changed.
    const_cast<Model&>(self()).for_each_param([&](Param<Scalar>& p) { visit(std::as_const(p)); });
  }

  // The parameter called `name` ("blocks.0.attn.qkv.weight"), or nullptr.
  const Param<Scalar>* find_param(std::string_view name) const {
    const Param<Scalar>* found = nullptr;
    for_each_param([&](const Param<Scalar>& p) {
      if (!found && p.name == name) found = &p;
    });
    return found;
  }
  Param<Scalar>* find_param(std::string_view name) {
    return const_cast<Param<Scalar>*>(std::as_const(*this).find_param(name));
  }

  // The parameter called `name`; IndexError, listing the names there are, if the model has none.
  const Param<Scalar>& param(std::string_view name) const {
    const Param<Scalar>* p = find_param(name);
    if (!p) {
      std::string names;
      for_each_param([&](const Param<Scalar>& q) { names += (names.empty() ? "" : ", ") + q.name; });
      throw IndexError("no parameter named '" + std::string(name) + "'; the model has: " + names);
    }
    return *p;
  }
  Param<Scalar>& param(std::string_view name) { return const_cast<Param<Scalar>&>(std::as_const(*this).param(name)); }

  // How many tensors for_each_param visits.
  Index num_tensors() const {
    Index n = 0;
    for_each_param([&](const Param<Scalar>&) { ++n; });
    return n;
  }

 private:
  const Model& self() const { return static_cast<const Model&>(*this); }
};

}  // namespace seqgen
