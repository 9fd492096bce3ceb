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
      check_shape<float>(9, 4100, 20, 1e-6);   // two column blocks
    }
  }
  detail::set_avx2_kernel(avx2);
  set_num_threads(threads);
}

TEST_CASE("gemm: shapes are checked", "[gemm][errors]") {
  Mat<double> C(2, 3);
  SEQGEN_THROWS_WITH(gemm<double>(Mat<double>::Ones(2, 4), false, Mat<double>::Ones(5, 3), false, C, false), ShapeError,
                     "gemm: op(A) is (2, 4), op(B) is (5, 3) and C is (2, 3)");
  SEQGEN_THROWS_WITH(gemm<double>(Mat<double>::Ones(2, 4), false, Mat<double>::Ones(4, 3), true, C, false), ShapeError,
                     "op(B) is (3, 4)");
}

}  // namespace test_gemm
