// A deterministic random generator with its own samplers.
//
// std::mt19937 is portable but std::normal_distribution and std::uniform_real_distribution are
// not: libstdc++, libc++ and MSVC produce different numbers from the same engine. seqgen needs the
// same seed to give the same weights everywhere, so it uses its own:
//   engine  xoshiro256** (Blackman & Vigna, 2018), seeded through splitmix64
//   uniform 53 high bits of a draw, scaled into [0, 1)
//   normal  Box-Muller, one normal per two uniforms (no cached spare, so the state is just 4 words)
// Box-Muller calls std::log, std::sqrt and std::cos; sqrt is exact under IEEE-754 and glibc's
// log and cos are correctly rounded in practice, so results agree across compilers on one libm.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "seqgen/core/error.hpp"

namespace seqgen {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& word : s_) word = splitmix64(x);
  }

  // Raw 64 random bits.
  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  // Uniform integer in [0, n), without modulo bias (rejection of the short last interval).
  std::uint64_t uniform_int(std::uint64_t n) {
    check<ConfigError>(n > 0, "Rng::uniform_int: n must be positive, got 0");
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return x % n;
  }

  // Standard normal N(0, 1) by Box-Muller.
  double normal() {
    const double u1 = 1.0 - uniform();  // in (0, 1], so log(u1) is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  // The whole state, for checkpoints: restoring it continues the exact same sequence.
  const State& state() const { return s_; }
  void set_state(const State& s) {
    check<ConfigError>(s[0] | s[1] | s[2] | s[3], "Rng::set_state: the all-zero state is invalid for xoshiro256**");
    s_ = s;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  State s_{};
};

}  // namespace seqgen
