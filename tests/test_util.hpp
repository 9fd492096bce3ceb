// Small helpers shared by the tests.
#pragma once

#include <seqgen/core/gradcheck.hpp>
#include <seqgen/core/init.hpp>
#include <seqgen/core/param.hpp>
#include <seqgen/core/parallel.hpp>

#include <vector>

#include "catch_compat.hpp"

namespace seqgen_test {

using seqgen::Index;
using seqgen::Mat;

// A (rows, cols) matrix with entries ~ U(-scale, scale), fixed by the seed.
template <typename Scalar = double>
Mat<Scalar> random_mat(Index rows, Index cols, std::uint64_t seed, double scale = 1.0) {
  seqgen::Rng rng(seed);
  Mat<Scalar> m(rows, cols);
  seqgen::uniform_init(m, rng, scale);
  return m;
}

// Checks a gradient-check result and prints the worst element when it fails.
inline void require_grad_ok(const seqgen::GradCheckResult& result) {
  INFO(result.message());
  REQUIRE(result.checked > 0);
  REQUIRE(result.ok);
}

}  // namespace seqgen_test
