// Adam and AdamW, PyTorch's torch.optim.Adam / torch.optim.AdamW updates (Kingma & Ba, 2015;
// Loshchilov & Hutter, 2019). At step t = 1, 2, ...:
//
//   g = g + λ p                   Adam (decoupled = false): L2 added to the gradient
//   p = p - lr λ p                AdamW (decoupled = true): decay applied to the weights first
//   m = β1 m + (1 - β1) g
//   v = β2 v + (1 - β2) g²
//   p = p - (lr / (1 - β1^t)) m / (sqrt(v) / sqrt(1 - β2^t) + ε)
//
// λ applies only where p.decay is true (matrices; not vectors or embeddings), which plays the role
// of minGPT's two parameter groups (nanoGPT's groups differ: they decay the embeddings too).
// AdamW<Scalar> is Adam with decoupled = true and
// weight_decay = 0.1 by default (nanoGPT's value; PyTorch's AdamW default is 0.01).
//
// Usage with a schedule:
//   AdamW<float> opt;  WarmupCosineLr schedule(6e-4, 6e-5, 100, 5000);
//   zero_grad(model); ... backward ...; opt.options.lr = schedule(opt.steps()); opt.step(model);
//
// The first step() allocates m and v; later steps never allocate and check that the module still
// has the same parameters (count, names, shapes). The update is one pass over each parameter,
// parallel over chunks for large parameters.
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
class Adam {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;
    bool decoupled = false;  // true: AdamW
  };

  // Public so that a schedule can set options.lr before each step; checked again by every step().
  Options options;

  Adam() : Adam(Options()) {}
  explicit Adam(const Options& o) : options(o) { validate(); }

  // Updates every parameter of `module` from its gradient.
  template <class Module>
  void step(Module& module) {
    if (!initialized_) init_state(module);
    check_param_list<Scalar>(kind(), params_, module);
    const StepScalars s = begin_step();
    std::size_t k = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      Moments& m = moments_[k++];
      update(s, p.decay, p.value.data(), p.grad.data(), m.exp_avg.data(), m.exp_avg_sq.data(), p.size());
    });
  }

  // The scalars of one step's update, computed once in double.
  struct StepScalars {
    Scalar b1, one_b1, b2, one_b2, step_size, inv_sqrt_bc2, eps;
  };
  // Checks the options, counts one more step and returns its scalars. step() calls it once and then
  // update() on every parameter; an optimizer that keeps the moments of a slice of the parameters
  // only (ZeRO-1, distributed/sharded_adamw.hpp) does the same on its slice.
  StepScalars begin_step() {
    validate();
    ++steps_;
    const Options& o = options;
    const double t = static_cast<double>(steps_);
    return {static_cast<Scalar>(o.beta1),
            static_cast<Scalar>(1 - o.beta1),
            static_cast<Scalar>(o.beta2),
            static_cast<Scalar>(1 - o.beta2),
            static_cast<Scalar>(o.lr / (1 - std::pow(o.beta1, t))),
            static_cast<Scalar>(1 / std::sqrt(1 - std::pow(o.beta2, t))),
            static_cast<Scalar>(o.eps)};
  }
  // The update of n contiguous values of one parameter (or of a piece of one): its values p,
  // gradient g and moments m, v, with weight decay when `decay`.
  void update(const StepScalars& s, bool decay, Scalar* p, const Scalar* g, Scalar* m, Scalar* v, Index n) const {
    const Options& o = options;
    const double wd = decay ? o.weight_decay : 0.0;
    const Scalar l2 = static_cast<Scalar>(o.decoupled ? 0.0 : wd);
    const Scalar shrink = static_cast<Scalar>(o.decoupled ? 1 - o.lr * wd : 1.0);
    const Index chunks = (n + kChunk - 1) / kChunk;
    // Each chunk of p, g, m and v stays in cache across the three statements: one pass over memory.
    // m and v are updated before p, so the L2 term reads the old p as PyTorch does.
    parallel_for(chunks, worth_a_team(4.0 * double(n)), [&](Index c) {  // p, g, m, v
      const Index i = c * kChunk, len = std::min(kChunk, n - i);
      auto P = Map(p + i, len);
      auto G = ConstMap(g + i, len);
      auto M = Map(m + i, len);
      auto V = Map(v + i, len);
      M = s.b1 * M + s.one_b1 * (G + l2 * P);
      V = s.b2 * V + s.one_b2 * (G + l2 * P).square();
      P = shrink * P - s.step_size * M / (V.sqrt() * s.inv_sqrt_bc2 + s.eps);
    });
  }

  // Number of step() calls so far (or the value restored by set_steps); drives bias correction.
  std::int64_t steps() const { return steps_; }
  // Restores the step count from a checkpoint.
  void set_steps(std::int64_t steps) {
    check<ConfigError>(steps >= 0 && steps <= (std::int64_t(1) << 53), kind(), ": steps must be in [0, 2^53], got ",
                       steps);
    steps_ = steps;
  }

  // Sizes the state for `module` with zero m and v and records its parameter list; step() calls it
  // on first use. Call it yourself before loading a checkpoint into a fresh optimizer. steps() is
  // left unchanged.
  template <class Module>
  void init_state(Module& module) {
    params_ = record_param_list<Scalar>(module);
    moments_.clear();
    for (const ParamShape& p : params_)
      moments_.push_back({Mat<Scalar>::Zero(p.rows, p.cols), Mat<Scalar>::Zero(p.rows, p.cols)});
    initialized_ = true;
  }
  // Frees m and v (an optimizer keeping a slice of them elsewhere, distributed/sharded_adamw.hpp);
  // steps() is left unchanged, and step() or init_state() sizes them again.
  void release_state() {
    params_.clear();
    moments_.clear();
    moments_.shrink_to_fit();
    initialized_ = false;
  }

  // Visits the checkpointable state as visit(const std::string& name, Mat<Scalar>& tensor), in
  // parameter order: "<param name>.exp_avg" then "<param name>.exp_avg_sq" (PyTorch's names).
  template <class Visit>
  void for_each_state(Visit&& visit) {
    for (std::size_t k = 0; k < params_.size(); ++k) {
      visit(params_[k].name + ".exp_avg", moments_[k].exp_avg);
      visit(params_[k].name + ".exp_avg_sq", moments_[k].exp_avg_sq);
    }
  }
  template <class Visit>
  void for_each_state(Visit&& visit) const {
    for (std::size_t k = 0; k < params_.size(); ++k) {
      visit(params_[k].name + ".exp_avg", moments_[k].exp_avg);
      visit(params_[k].name + ".exp_avg_sq", moments_[k].exp_avg_sq);
    }
  }

 private:
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Array>;
  using ConstMap = Eigen::Map<const Array>;
  static constexpr Index kChunk = 1024;                  // elements per chunk: a few KB of each array

  struct Moments {
    Mat<Scalar> exp_avg;     // m, same shape as the parameter
    Mat<Scalar> exp_avg_sq;  // v, same shape as the parameter
  };
  std::vector<ParamShape> params_;  // as at the first step
  std::vector<Moments> moments_;
  std::int64_t steps_ = 0;
  bool initialized_ = false;

  const char* kind() const { return options.decoupled ? "AdamW" : "Adam"; }

  void validate() const {
    const Options& o = options;
    check<ConfigError>(std::isfinite(o.lr) && o.lr >= 0, kind(), ": lr must be finite and >= 0, got ", o.lr);
    check<ConfigError>(o.beta1 >= 0 && o.beta1 < 1, kind(), ": beta1 must be in [0, 1), got ", o.beta1);
    check<ConfigError>(o.beta2 >= 0 && o.beta2 < 1, kind(), ": beta2 must be in [0, 1), got ", o.beta2);
    check<ConfigError>(std::isfinite(o.eps) && o.eps > 0, kind(), ": eps must be finite and > 0, got ", o.eps);
    check<ConfigError>(std::isfinite(o.weight_decay) && o.weight_decay >= 0, kind(),
                       ": weight_decay must be finite and >= 0, got ", o.weight_decay);
  }
};

// Adam with decoupled weight decay, nanoGPT's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
// weight_decay 0.1 on the parameters whose decay flag is set.
template <typename Scalar>
class AdamW : public Adam<Scalar> {
 public:
  struct Options : Adam<Scalar>::Options {
    Options() {
      this->decoupled = true;
      this->weight_decay = 0.1;
    }
  };

  AdamW() : AdamW(Options()) {}
  explicit AdamW(const Options& o) : Adam<Scalar>(o) {}
};

}  // namespace seqgen
