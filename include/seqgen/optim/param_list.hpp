// The parameter list an optimizer records at its first step (name and shape of each parameter, in
// visiting order), and the check every later step makes that the module still has exactly it.
#pragma once

#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/param.hpp"

namespace seqgen {

struct ParamShape {
  std::string name;
  Index rows = 0, cols = 0;
};

template <typename Scalar, class Module>
std::vector<ParamShape> record_param_list(Module& module) {
  std::vector<ParamShape> list;
  module.for_each_param([&](Param<Scalar>& p) { list.push_back({p.name, p.value.rows(), p.value.cols()}); });
  return list;
}

// Throws unless `module` has the parameters of `list`, in the same order, each with a gradient of its
// value's shape. `who` names the optimizer in the message.
template <typename Scalar, class Module>
void check_param_list(const char* who, const std::vector<ParamShape>& list, Module& module) {
  std::size_t k = 0;
  module.for_each_param([&](Param<Scalar>& p) {
    check<ConfigError>(k < list.size(), who, ": the module has more parameters than the ", list.size(),
                       " it had at the first step");
    const ParamShape& s = list[k++];
    check<ConfigError>(p.name == s.name && p.value.rows() == s.rows && p.value.cols() == s.cols, who, ": parameter ",
                       k - 1, " is '", p.name, "' (", p.value.rows(), ", ", p.value.cols(), "), expected '", s.name,
                       "' (", s.rows, ", ", s.cols, ") as at the first step");
    check<ShapeError>(p.grad.rows() == s.rows && p.grad.cols() == s.cols, who, ": gradient of '", p.name, "' is (",
                      p.grad.rows(), ", ", p.grad.cols(), "), expected (", s.rows, ", ", s.cols, ")");
  });
  check<ConfigError>(k == list.size(), who, ": the module has ", k, " parameters, expected ", list.size(),
                     " as at the first step");
}

}  // namespace seqgen
