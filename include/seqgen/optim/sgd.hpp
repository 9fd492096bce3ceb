// Stochastic gradient descent with momentum, PyTorch's torch.optim.SGD update exactly:
//
//   d = g + λ p                       coupled weight decay (L2), only where p.decay is true
//   buf = d                           at the first step
//   buf = μ buf + (1 - τ) d           at later steps            (μ momentum, τ dampening)
//   d = d + μ buf   if nesterov,  else  d = buf                 (when μ != 0)
//   p = p - lr d
//
// Weight decay follows Param::decay (matrices decay, vectors and embeddings do not), which plays
// the role of PyTorch's two parameter groups in minGPT (nanoGPT decays the embeddings too).
//
// Usage (the optimizer only ever sees for_each_param):
//   Sgd<float> opt;  opt.options.lr = 0.1;  opt.options.momentum = 0.9;
//   zero_grad(model); ... backward ...; opt.step(model);
//
// The first step() allocates the momentum buffers; later steps never allocate and check that the
// module still has the same parameters (count, names, shapes). The update is one pass over each
// parameter, parallel over chunks for large parameters.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/optim/param_list.hpp"

namespace seqgen {

template <typename Scalar>
class Sgd {
 public:
  struct Options {
    double lr = 1e-2;
    double momentum = 0;
    double dampening = 0;
    double weight_decay = 0;
    bool nesterov = false;
  };

  // Public so that a schedule can set options.lr before each step; checked again by every step().
  Options options;

  Sgd() : Sgd(Options()) {}
  explicit Sgd(const Options& o) : options(o) { validate(); }

  // Updates every parameter of `module` from its gradient.
  template <class Module>
  void step(Module& module) {
    validate();
    if (!initialized_) init_state(module);
    check_param_list<Scalar>("Sgd", params_, module);

    const Options& o = options;
    const Scalar lr = static_cast<Scalar>(o.lr), mu = static_cast<Scalar>(o.momentum);
    const Scalar keep = static_cast<Scalar>(1 - o.dampening);
    const bool first = steps_ == 0;
    std::size_t k = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      Mat<Scalar>& buffer = momentum_[k++];
      const Scalar wd = static_cast<Scalar>(p.decay ? o.weight_decay : 0.0);
      const Index n = p.size();
      Scalar* pv = p.value.data();
      const Scalar* pg = p.grad.data();
      if (o.momentum == 0) {
        // p = p - lr (g + λ p): already a single pass.
        Map(pv, n) -= lr * (ConstMap(pg, n) + wd * Map(pv, n));
        return;
      }
      // The buffer is missing only if momentum was switched on after the first step; PyTorch then
      // starts it from the gradient too.
      const bool start = first || buffer.size() != n;
      if (buffer.size() != n) buffer.resize(p.value.rows(), p.value.cols());
      Scalar* pb = buffer.data();
      const Index chunks = (n + kChunk - 1) / kChunk;
      // Each chunk of p, g and buf stays in cache between the two statements: one pass over memory.
      parallel_for(chunks, worth_a_team(3.0 * double(n)), [&](Index c) {  // p, g, buf
        const Index i = c * kChunk, len = std::min(kChunk, n - i);
        auto P = Map(pv + i, len);
        auto G = ConstMap(pg + i, len);
        auto B = Map(pb + i, len);
        if (start)
          B = G + wd * P;
        else
          B = mu * B + keep * (G + wd * P);
        if (o.nesterov)
          P -= lr * ((G + wd * P) + mu * B);
        else
          P -= lr * B;
      });
    });
    ++steps_;
  }

  // Number of step() calls so far (or the value restored by set_steps).
  std::int64_t steps() const { return steps_; }
  // Restores the step count from a checkpoint. With momentum, steps() == 0 means "the next step
  // starts the buffers from the gradient", so restore it after the buffers.
  void set_steps(std::int64_t steps) {
    check<ConfigError>(steps >= 0 && steps <= (std::int64_t(1) << 53), "Sgd: steps must be in [0, 2^53], got ",
                       steps);
    steps_ = steps;
  }

  // Sizes the state for `module` with zero buffers and records its parameter list; step() calls it
  // on first use. Call it yourself before loading a checkpoint into a fresh optimizer. steps() is
  // left unchanged.
  template <class Module>
  void init_state(Module& module) {
    params_ = record_param_list<Scalar>(module);
    momentum_.clear();
    for (const ParamShape& p : params_)
      momentum_.push_back(options.momentum != 0 ? Mat<Scalar>::Zero(p.rows, p.cols) : Mat<Scalar>());
    initialized_ = true;
  }

  // Visits the checkpointable state as visit(const std::string& name, Mat<Scalar>& tensor), in
  // parameter order, with names "<param name>.momentum_buffer". Visits nothing without momentum.
  template <class Visit>
  void for_each_state(Visit&& visit) {
    for (std::size_t k = 0; k < params_.size(); ++k)
      if (momentum_[k].size() > 0) visit(params_[k].name + ".momentum_buffer", momentum_[k]);
  }
  template <class Visit>
  void for_each_state(Visit&& visit) const {
    for (std::size_t k = 0; k < params_.size(); ++k)
      if (momentum_[k].size() > 0) visit(params_[k].name + ".momentum_buffer", momentum_[k]);
  }

 private:
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Array>;
  using ConstMap = Eigen::Map<const Array>;
  static constexpr Index kChunk = 1024;             // elements per chunk: a few KB of each array

  std::vector<ParamShape> params_;    // as at the first step
  std::vector<Mat<Scalar>> momentum_;  // one buffer per parameter, empty without momentum
  std::int64_t steps_ = 0;
  bool initialized_ = false;

  void validate() const {
    const Options& o = options;
    check<ConfigError>(std::isfinite(o.lr) && o.lr >= 0, "Sgd: lr must be finite and >= 0, got ", o.lr);
    check<ConfigError>(std::isfinite(o.momentum) && o.momentum >= 0, "Sgd: momentum must be finite and >= 0, got ",
                       o.momentum);
    check<ConfigError>(o.dampening >= 0 && o.dampening <= 1, "Sgd: dampening must be in [0, 1], got ", o.dampening);
    check<ConfigError>(std::isfinite(o.weight_decay) && o.weight_decay >= 0,
                       "Sgd: weight_decay must be finite and >= 0, got ", o.weight_decay);
    check<ConfigError>(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
                       "Sgd: nesterov requires momentum > 0 and dampening == 0, got momentum ", o.momentum,
                       " and dampening ", o.dampening);
  }
};

}  // namespace seqgen
