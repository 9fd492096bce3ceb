// Learning-rate schedules: lr = schedule(step), step counted from 0 (pass optimizer.steps()).
//
//   ConstantLr{lr}                                   lr at every step
//   WarmupCosineLr{max_lr, min_lr, warmup, total}    nanoGPT / llm.c shape:
//     step < warmup:           max_lr (step + 1) / warmup              linear warm-up
//     warmup <= step < total:  min_lr + ½ (1 + cos(π r)) (max_lr - min_lr),  r = (step - warmup) / (total - warmup)
//     step >= total:           min_lr
//   The warm-up ends at max_lr (step warmup - 1), the cosine starts there at step warmup, and
//   reaches min_lr at step total.
#pragma once

#include <cmath>
#include <cstdint>

#include "seqgen/core/error.hpp"

namespace seqgen {

struct ConstantLr {
  double lr;

  explicit ConstantLr(double lr_) : lr(lr_) {
    check<ConfigError>(std::isfinite(lr) && lr >= 0, "ConstantLr: lr must be finite and >= 0, got ", lr);
  }
  double operator()(std::int64_t step) const {
    check<ConfigError>(step >= 0, "ConstantLr: step must be >= 0, got ", step);
    return lr;
  }
};

struct WarmupCosineLr {
  double max_lr, min_lr;
  std::int64_t warmup_steps, total_steps;

  WarmupCosineLr(double max_lr_, double min_lr_, std::int64_t warmup_steps_, std::int64_t total_steps_)
      : max_lr(max_lr_), min_lr(min_lr_), warmup_steps(warmup_steps_), total_steps(total_steps_) {
    check<ConfigError>(std::isfinite(max_lr) && max_lr >= 0, "WarmupCosineLr: max_lr must be finite and >= 0, got ",
                       max_lr);
    check<ConfigError>(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= max_lr,
                       "WarmupCosineLr: min_lr must be in [0, max_lr = ", max_lr, "], got ", min_lr);
    check<ConfigError>(warmup_steps >= 0, "WarmupCosineLr: warmup_steps must be >= 0, got ", warmup_steps);
    check<ConfigError>(total_steps >= warmup_steps, "WarmupCosineLr: total_steps (", total_steps,
                       ") must be >= warmup_steps (", warmup_steps, ")");
  }

  double operator()(std::int64_t step) const {
    check<ConfigError>(step >= 0, "WarmupCosineLr: step must be >= 0, got ", step);
    if (step < warmup_steps) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (step >= total_steps) return min_lr;
    const double pi = 3.14159265358979323846;
    const double r = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    return min_lr + 0.5 * (1 + std::cos(pi * r)) * (max_lr - min_lr);
  }
};

}  // namespace seqgen
