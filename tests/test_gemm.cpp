#include <seqgen/core/gemm.hpp>

#include <limits>

#include "test_util.hpp"

namespace test_gemm {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// op(A) op(B) through gemm against Eigen's product, for one shape and all four transpositions,
// assigned and accumulated, into a block of a larger matrix (a leading dimension above M).
template <typename Scalar>
void check_shape(Index M, Index N, Index K, double tol) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      INFO("M=" << M << " N=" << N << " K=" << K << " transpose_a=" << ta << " transpose_b=" << tb);
      // A and B are blocks of larger matrices too: their leading dimension is not their row count.
      const Mat<Scalar> A_big = random_mat<Scalar>((ta ? K : M) + 5, (ta ? M : K) + 1, 1);
      const Mat<Scalar> B_big = random_mat<Scalar>((tb ? N : K) + 4, (tb ? K : N) + 2, 2);
      const Mat<Scalar> A = A_big.block(3, 1, ta ? K : M, ta ? M : K);
      const Mat<Scalar> B = B_big.block(2, 1, tb ? N : K, tb ? K : N);
      const Mat<Scalar> opA = ta ? Mat<Scalar>(A.transpose()) : A;
      const Mat<Scalar> opB = tb ? Mat<Scalar>(B.transpose()) : B;
      const Mat<Scalar> expected = opA * opB;

      Mat<Scalar> big = random_mat<Scalar>(M + 3, N + 2, 3);
      const Mat<Scalar> before = big;
      auto C = big.block(1, 2, M, N);
      const auto A_view = A_big.block(3, 1, A.rows(), A.cols());
      const auto B_view = B_big.block(2, 1, B.rows(), B.cols());
      C.setConstant(std::numeric_limits<Scalar>::quiet_NaN());  // assigning never reads C
      gemm<Scalar>(A_view, ta, B_view, tb, C, false);
      CHECK(double((C - expected).cwiseAbs().maxCoeff()) <= tol * std::max<double>(1, K));
      gemm<Scalar>(A_view, ta, B_view, tb, C, true);
      CHECK(double((C - 2 * expected).cwiseAbs().maxCoeff()) <= tol * std::max<double>(1, K));
      // nothing outside the block changes
      big.block(1, 2, M, N) = before.block(1, 2, M, N);
      CHECK(big == before);
    }
  }
}

// PackedMatrix: op(A) packed once, then multiplied by two different B (assigned, then accumulated),
// into a block of a larger matrix, against Eigen's product.
template <typename Scalar>
void check_packed(Index M, Index N, Index K, double tol) {
  for (bool ta : {false, true}) {
    INFO("M=" << M << " N=" << N << " K=" << K << " transpose=" << ta);
    const Mat<Scalar> A_big = random_mat<Scalar>((ta ? K : M) + 3, (ta ? M : K) + 1, 4);
    const auto A = A_big.block(2, 1, ta ? K : M, ta ? M : K);
    const Mat<Scalar> opA = ta ? Mat<Scalar>(A.transpose()) : Mat<Scalar>(A);
    PackedMatrix<Scalar> packed;
    packed.pack(A, ta);
    CHECK(packed.rows() == M);
    CHECK(packed.cols() == K);
    for (int seed : {5, 6}) {
      const Mat<Scalar> B_big = random_mat<Scalar>(K + 2, N + 1, seed);
      const auto B = B_big.block(1, 1, K, N);
      Mat<Scalar> big = random_mat<Scalar>(M + 3, N + 2, 7);
      const Mat<Scalar> before = big;
      auto C = big.block(1, 2, M, N);
      C.setConstant(std::numeric_limits<Scalar>::quiet_NaN());  // assigning never reads C
      packed.multiply(B, C, false);
      const Mat<Scalar> expected = opA * B;
      CHECK(double((C - expected).cwiseAbs().maxCoeff()) <= tol * std::max<double>(1, K));
      packed.multiply(B, C, true);
      CHECK(double((C - 2 * expected).cwiseAbs().maxCoeff()) <= tol * std::max<double>(1, K));
      big.block(1, 2, M, N) = before.block(1, 2, M, N);
      CHECK(big == before);
    }
  }
}

// PackedMatrix split by rows: the panels [0, split) and [split, panels) in two calls, at every
// boundary, give the whole product; a range leaves every other row of C as it was.
template <typename Scalar>
void check_packed_ranges(Index M, Index N, Index K, double tol) {
  INFO("M=" << M << " N=" << N << " K=" << K);
  const Mat<Scalar> A = random_mat<Scalar>(M, K, 1 + std::uint64_t(M * K));
  const Mat<Scalar> B = random_mat<Scalar>(K, N, 2);
  const Mat<Scalar> C0 = random_mat<Scalar>(M, N, 4);
  const Mat<Scalar> expected = A * B;
  PackedMatrix<Scalar> packed;
  packed.pack(A, false);
  REQUIRE(packed.panels() == (M + 15) / 16);
  for (Index split = 0; split <= packed.panels(); ++split) {
    Mat<Scalar> C = C0;
    packed.multiply(B, C, true, 0, split);
    packed.multiply(B, C, true, split, packed.panels());
    CHECK(double((C - C0 - expected).cwiseAbs().maxCoeff()) <= tol * double(K));
  }
  if (packed.panels() > 1) {
    Mat<Scalar> C = C0;
    packed.multiply(B, C, false, 1, packed.panels());
    CHECK(C.topRows(16) == C0.topRows(16));
    CHECK(double((C.bottomRows(M - 16) - expected.bottomRows(M - 16)).cwiseAbs().maxCoeff()) <= tol * double(K));
    // a range computes its rows exactly as the whole product does
    Mat<Scalar> whole(M, N);
    packed.multiply(B, whole, false);
    CHECK(C.bottomRows(M - 16) == whole.bottomRows(M - 16));
  }
}

}  // namespace

TEST_CASE("gemm: equals Eigen's product for every transposition, small and threaded shapes", "[gemm]") {
  const int threads = num_threads();
  for (int nt : {1, 2, 3}) {
    INFO(nt << " threads");
    set_num_threads(nt);
    check_shape<double>(1, 1, 1, 1e-15);
    check_shape<double>(40, 1, 30, 1e-15);  // one column: the matrix-vector path
    check_shape<double>(1, 40, 30, 1e-15);
    check_shape<double>(5, 3, 7, 1e-15);
    check_shape<double>(37, 29, 13, 1e-15);
    check_shape<double>(130, 70, 300, 1e-15);  // wide enough to split across threads, by rows
    check_shape<double>(70, 130, 300, 1e-15);  // by columns
    check_shape<float>(200, 100, 96, 1e-6);
  }
  set_num_threads(threads);
}

TEST_CASE("gemm: float through the AVX2 kernel and through Eigen's, across every cache block", "[gemm]") {
  const int threads = num_threads();
  const bool avx2 = detail::avx2_kernel();
  for (bool use_avx2 : {true, false}) {
    detail::set_avx2_kernel(use_avx2);  // stays off on a CPU without AVX2
    INFO("AVX2 kernel: " << detail::avx2_kernel());
    for (int nt : {1, 2}) {
      INFO(nt << " threads");
      set_num_threads(nt);
      check_shape<float>(16, 6, 1, 1e-6);      // one tile
      check_shape<float>(17, 7, 5, 1e-6);      // ragged tiles
      check_shape<float>(3, 4, 0, 1e-6);       // K = 0: C = 0
      check_shape<float>(401, 53, 600, 1e-6);  // three row blocks and three k blocks, all ragged
      check_shape<float>(35, 13, 203, 1e-6);   // k steps of 8 (the transposing packs) and a tail of 3
      check_shape<float>(9, 4100, 20, 1e-6);   // two column blocks
    }
  }
  detail::set_avx2_kernel(avx2);
  set_num_threads(threads);
}

TEST_CASE("gemm: a matrix packed once multiplies many right-hand sides, through both float kernels",
          "[gemm]") {
  const bool avx2 = detail::avx2_kernel();
  for (bool use_avx2 : {true, false}) {
    detail::set_avx2_kernel(use_avx2);
    INFO("AVX2 kernel: " << detail::avx2_kernel());
    check_packed<float>(16, 6, 1, 1e-6);     // one tile
    check_packed<float>(1024, 16, 256, 1e-6);  // an LSTM's W_hh h, H = 256, 16 sequences
    check_packed<float>(37, 13, 600, 1e-6);  // ragged panels and tiles, three k blocks
    check_packed<float>(5, 3, 0, 1e-6);      // K = 0: C = 0
    check_packed<float>(101, 1, 600, 1e-6);  // one column: the matrix-vector path
  }
  detail::set_avx2_kernel(avx2);
  check_packed<double>(37, 13, 60, 1e-15);
  check_packed<double>(37, 1, 60, 1e-15);

  if (detail::avx2_kernel()) {
    // One column alone (a thread's share of one sequence) gives the same bits as inside a wider product.
    const Mat<float> A = random_mat<float>(1029, 300, 10), B = random_mat<float>(300, 7, 11);
    PackedMatrix<float> packed;
    packed.pack(A, false);
    Mat<float> wide(A.rows(), 7), one(A.rows(), 1);
    packed.multiply(B, wide, false);
    for (Index j = 0; j < 7; ++j) {
      packed.multiply(B.col(j), one, false);
      CHECK(one.col(0) == wide.col(j));
    }
  }

  // A layout packed for one kernel stays readable after the switch changes.
  const Mat<float> A = random_mat<float>(20, 30, 8), B = random_mat<float>(30, 7, 9);
  PackedMatrix<float> packed;
  packed.pack(A, false);
  detail::set_avx2_kernel(!avx2);
  Mat<float> C(20, 7);
  packed.multiply(B, C, false);
  detail::set_avx2_kernel(avx2);
  CHECK(double((C - A * B).cwiseAbs().maxCoeff()) <= 1e-5);

  SEQGEN_THROWS_WITH(packed.multiply(Mat<float>::Ones(29, 7), C, false), ShapeError,
                     "PackedMatrix: op(A) is (20, 30), B is (29, 7) and C is (20, 7)");
  SEQGEN_THROWS_WITH(packed.multiply(B, C, false, 1, 3), ShapeError, "PackedMatrix: panels [1, 3) are outside [0, 2)");
  SEQGEN_THROWS_WITH(packed.multiply(B, C, false, 2, 1), ShapeError, "PackedMatrix: panels [2, 1) are outside [0, 2)");
}

TEST_CASE("gemm: a packed matrix multiplies by ranges of row panels, through both float kernels",
          "[gemm]") {
  const bool avx2 = detail::avx2_kernel();
  // rows that fill no panel, one panel exactly, and a partial last panel; 1 to 6 panels (the
  // matrix-vector kernel runs 4 panels at a time); one column, a few, and more than one tile
  for (bool use_avx2 : {true, false}) {
    detail::set_avx2_kernel(use_avx2);
    INFO("AVX2 kernel: " << detail::avx2_kernel());
    for (Index M : {5, 16, 37, 64, 96}) {
      for (Index N : {1, 3, 8}) {
        check_packed_ranges<float>(M, N, 7, 1e-6);
        check_packed_ranges<float>(M, N, 300, 1e-6);  // two k blocks
      }
    }
  }
  detail::set_avx2_kernel(avx2);
  for (Index M : {5, 37, 64})
    for (Index N : {1, 3}) check_packed_ranges<double>(M, N, 32, 1e-15);
}

TEST_CASE("gemm: shapes are checked", "[gemm][errors]") {
  Mat<double> C(2, 3);
  SEQGEN_THROWS_WITH(gemm<double>(Mat<double>::Ones(2, 4), false, Mat<double>::Ones(5, 3), false, C, false), ShapeError,
                     "gemm: op(A) is (2, 4), op(B) is (5, 3) and C is (2, 3)");
  SEQGEN_THROWS_WITH(gemm<double>(Mat<double>::Ones(2, 4), false, Mat<double>::Ones(4, 3), true, C, false), ShapeError,
                     "op(B) is (3, 4)");
}

}  // namespace test_gemm
