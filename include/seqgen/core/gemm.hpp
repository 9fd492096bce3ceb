// Matrix products of the training step: C = op(A) op(B) or C += op(A) op(B), op(X) = X or Xᵀ,
// split across seqgen's threads (parallel.hpp) and run with no heap allocation after warm-up.
//
//   op(A): (M, K)    op(B): (K, N)    C: (M, N)
//
// Why not `C.noalias() = A * B`: Eigen packs panels of A and B into buffers on every product, on
// the heap once they pass EIGEN_STACK_ALLOCATION_LIMIT (128 KB), which every GEMM of a GPT layer
// does, and always on the heap when Eigen runs the product on several threads. Here each thread
// keeps its packing buffers (thread_local, grown to the largest product it has run) and runs a
// single-thread kernel on the slices of C it claims, kChunksPerThread slices per thread:
//   N ≥ M: a slice is columns [j_s, j_s+1) of C, from all of op(A) and those columns of op(B)
//   N < M: a slice is rows [i_s, i_s+1) of C, from those rows of op(A) and all of op(B)
// Each slice packs the operand it shares separately, a small cost next to its M·N·K/slices
// multiply-adds, and the threads never wait on each other inside a product. A single column
// (N = 1, a decoding step) runs as Eigen's matrix-vector product, which neither packs nor allocates.
//
// The kernel: for float on an x86-64 CPU with AVX2 and FMA (checked at run time), seqgen's own
// (gemm_avx2.hpp); otherwise Eigen's (general_matrix_matrix_product with a caller-supplied
// blocking), an internal interface that is stable across Eigen 3.4.x. With another Eigen version
// and no AVX2 seqgen falls back to the ordinary products, which are as fast but allocate.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/gemm_avx2.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/tensor.hpp"

#if EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90)
#define SEQGEN_GEMM_KEEPS_BUFFERS 1
#else
#define SEQGEN_GEMM_KEEPS_BUFFERS 0
#endif

namespace seqgen {

namespace detail {

// The packing buffers of the calling thread. They only grow, so after the first step of a
// training run (which runs every product shape) no product allocates.
template <typename Scalar>
struct GemmBuffers {
  std::vector<Scalar, Eigen::aligned_allocator<Scalar>> a, b;

  void reserve(std::size_t size_a, std::size_t size_b) {
    if (a.size() < size_a) a.resize(size_a);
    if (b.size() < size_b) b.resize(size_b);
  }
};

template <typename Scalar>
GemmBuffers<Scalar>& thread_gemm_buffers() {
  static thread_local GemmBuffers<Scalar> buffers;
  return buffers;
}

#if SEQGEN_GEMM_KEEPS_BUFFERS
// Eigen's cache blocking for an (M, N, K) product (panels of kc × mc of A and kc × nc of B),
// pointing at this thread's buffers instead of allocating its own.
template <typename Scalar>
class KeptBlocking : public Eigen::internal::level3_blocking<Scalar, Scalar> {
 public:
  KeptBlocking(Index M, Index N, Index K) {
    this->m_mc = M;
    this->m_nc = N;
    this->m_kc = K;
    Eigen::internal::computeProductBlockingSizes<Scalar, Scalar, 1, Index>(this->m_kc, this->m_mc, this->m_nc,
                                                                          Index(1));
    GemmBuffers<Scalar>& buffers = thread_gemm_buffers<Scalar>();
    buffers.reserve(std::size_t(this->m_kc * this->m_mc), std::size_t(this->m_kc * this->m_nc));
    this->m_blockA = buffers.a.data();
    this->m_blockB = buffers.b.data();
  }
};
#endif

// C = op(A) op(B), or C += op(A) op(B) when accumulating, on the calling thread. Pointers and
// leading dimensions of column-major storage; a transposed operand is the same memory read as
// row-major.
template <typename Scalar, bool TransA, bool TransB>
void gemm_serial(Index M, Index N, Index K, const Scalar* a, Index lda, const Scalar* b, Index ldb, Scalar* c,
                 Index ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  Eigen::Map<Mat<Scalar>, 0, Eigen::OuterStride<>> C(c, M, N, Eigen::OuterStride<>(ldc));
  if (K == 0) {
    if (!accumulate) C.setZero();
    return;
  }
#if SEQGEN_GEMM_AVX2
  if constexpr (std::is_same_v<Scalar, float>) {
    if (avx2::enabled()) {
      GemmBuffers<float>& buffers = thread_gemm_buffers<float>();
      buffers.reserve(std::size_t(avx2::packed_a_size(M, K)), std::size_t(avx2::packed_b_size(N, K)));
      avx2::gemm<TransA, TransB>(M, N, K, a, lda, b, ldb, c, ldc, accumulate, buffers.a.data(), buffers.b.data());
      return;
    }
  }
#endif
  if (!accumulate) C.setZero();
#if SEQGEN_GEMM_KEEPS_BUFFERS
  KeptBlocking<Scalar> blocking(M, N, K);
  Eigen::internal::general_matrix_matrix_product<Index, Scalar, TransA ? Eigen::RowMajor : Eigen::ColMajor, false,
                                                 Scalar, TransB ? Eigen::RowMajor : Eigen::ColMajor, false,
                                                 Eigen::ColMajor, 1>::run(M, N, K, a, lda, b, ldb, c, 1, ldc,
                                                                          Scalar(1), blocking, nullptr);
#else
  using Stride = Eigen::OuterStride<>;
  using ConstMap = Eigen::Map<const Mat<Scalar>, 0, Stride>;
  const ConstMap A(a, TransA ? K : M, TransA ? M : K, Stride(lda));
  const ConstMap B(b, TransB ? N : K, TransB ? K : N, Stride(ldb));
  if (TransA && TransB) {
    C.noalias() += A.transpose() * B.transpose();
  } else if (TransA) {
    C.noalias() += A.transpose() * B;
  } else if (TransB) {
    C.noalias() += A * B.transpose();
  } else {
    C.noalias() += A * B;
  }
#endif
}

// Whether float products run seqgen's AVX2 kernel: on by default when the CPU has AVX2 and FMA,
// never on a CPU without them. A test turns it off to check Eigen's kernel on the same machine.
inline bool avx2_kernel() {
#if SEQGEN_GEMM_AVX2
  return avx2::enabled();
#else
  return false;
#endif
}

inline void set_avx2_kernel(bool on) {
#if SEQGEN_GEMM_AVX2
  avx2::enabled() = on && avx2::supported();
#else
  (void)on;
#endif
}

template <typename Scalar, bool TransA, bool TransB>
void gemm_threads(const ConstMatRef<Scalar>& A, const ConstMatRef<Scalar>& B, MatRef<Scalar> C, bool accumulate) {
  const Index M = C.rows(), N = C.cols(), K = TransA ? A.rows() : A.cols();
  const Scalar* a = A.data();
  const Scalar* b = B.data();
  const Index lda = A.outerStride(), ldb = B.outerStride(), ldc = C.outerStride();
  const bool by_columns = N >= M;
  // C is cut into slices of whole tiles of the kernels (16 × 6 for AVX2, 24 × 4 or 8 × 4 for
  // Eigen's), so that only the last slice has ragged edges, and the threads claim the slices one
  // after another (parallel_for). Up to kChunksPerThread slices per thread, so that a thread that
  // shares its core with another program takes fewer, but none narrower than kMinSlice: every
  // slice packs the operand it shares once more, which costs about as much as 20 multiply-adds per
  // element, 20 / kMinSlice of the slice's products. One thread: one slice.
  constexpr Index kMinSlice = 192;
  const Index extent = by_columns ? N : M, tile = by_columns ? 24 : 48;
  const bool parallel = worth_a_team_for_products(double(M) * double(N) * double(K));
  const Index nt = parallel ? Index(num_threads()) : 1;
  const Index slices =
      std::min<Index>(std::max<Index>(nt, std::min<Index>(nt * kChunksPerThread, extent / kMinSlice)),
                      std::max<Index>(1, (extent + tile - 1) / tile));
  auto run_slice = [&](Index s) {
    Index i0 = 0, i1 = M, j0 = 0, j1 = N;
    if (by_columns) {
      thread_share(N, int(s), int(slices), tile, j0, j1);
    } else {
      thread_share(M, int(s), int(slices), tile, i0, i1);
    }
    if (i1 == i0 || j1 == j0) return;  // more slices than tiles
    // Row i of op(A) and column j of op(B) in memory:
    const Scalar* a_rows = TransA ? a + i0 * lda : a + i0;
    const Scalar* b_cols = TransB ? b + j0 : b + j0 * ldb;
    gemm_serial<Scalar, TransA, TransB>(i1 - i0, j1 - j0, K, a_rows, lda, b_cols, ldb, &C(i0, j0), ldc,
                                        accumulate);
  };
  parallel_for(slices, parallel, run_slice);
}

}  // namespace detail

// op(A) (M, K) packed once for many products op(A)·B with different B, run on the calling thread:
// the one packed-matrix type of seqgen, for its two uses.
//   - A recurrent layer multiplies W_hh by a new h_{t−1} (B sequences) at every time step; packing
//     W_hh once per sequence instead of once per step saves a pass over the weights per step, and
//     lets the threads share one packed copy.
//   - A decoding step multiplies each weight matrix of a GPT block by one column per sequence, and
//     reading the weights is its whole cost. The packed copy is read front to back in one stream,
//     which the hardware prefetcher follows at full speed (a column-major W·x reads W's columns as
//     M-strided pieces).
// The layout, for float with the AVX2 kernel: op(A) cut into panels of kPanel = 16 rows, one after
// another, each stored column after column (the last panel padded with zero rows):
//   data[(p·K + k)·16 + i] = op(A)(16p + i, k)
// which is what gemm_avx2.hpp's micro-kernel reads (pack_a over the whole matrix), so a product
// with several columns runs that kernel without packing A again, and a single column runs its
// matrix-vector kernel (gemv_packed_lhs). Otherwise (double, or a CPU without AVX2 at run time):
// op(A) as a plain column-major (M, K) matrix and Eigen's kernels, which allocate nothing here.
//
// Products can be split by rows across a team: multiply(B, C, accumulate, p0, p1) writes only the
// rows of panels [p0, p1) of C, the same values as the whole product gives them, so threads may
// share C with disjoint panel ranges. pack() reads A once; A may change afterwards without
// affecting the packed copy. Buffers only grow, so repacking the same shape never allocates.
template <typename Scalar>
class PackedMatrix {
 public:
  static constexpr Index kPanel = 16;  // rows per panel (the AVX2 micro-kernel's MR)

  // Packs op(A): A, or Aᵀ when `transpose`.
  void pack(const ConstMatRef<Scalar>& A, bool transpose) {
    rows_ = transpose ? A.cols() : A.rows();
    cols_ = transpose ? A.rows() : A.cols();
#if SEQGEN_GEMM_AVX2
    static_assert(kPanel == detail::avx2::kMR, "PackedMatrix panels are the AVX2 kernel's row panels");
    if constexpr (std::is_same_v<Scalar, float>) {
      avx2_ = detail::avx2::enabled();
      if (avx2_) {
        grow(std::size_t(detail::avx2::packed_lhs_size(rows_, cols_)));
        if (transpose) {
          detail::avx2::pack_a<true>(rows_, cols_, A.data(), A.outerStride(), data_.data());
        } else {
          detail::avx2::pack_a<false>(rows_, cols_, A.data(), A.outerStride(), data_.data());
        }
        return;
      }
    }
#endif
    // Other kernels: op(A) as a column-major (rows, cols) matrix, so the product reads no transpose.
    grow(std::size_t(rows_ * cols_));
    Eigen::Map<Mat<Scalar>> plain(data_.data(), rows_, cols_);
    if (transpose) {
      plain = A.transpose();
    } else {
      plain = A;
    }
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index panels() const { return (rows_ + kPanel - 1) / kPanel; }

  // C = op(A) B, or C += op(A) B when accumulating. B: (cols(), N), C: (rows(), N), not overlapping.
  void multiply(const ConstMatRef<Scalar>& B, MatRef<Scalar> C, bool accumulate) const {
    multiply(B, C, accumulate, 0, panels());
  }

  // The same for the rows of panels [p0, p1) only, rows [16·p0, min(16·p1, rows())) of C; the
  // other rows of C are neither read nor written.
  void multiply(const ConstMatRef<Scalar>& B, MatRef<Scalar> C, bool accumulate, Index p0, Index p1) const {
    check<ShapeError>(B.rows() == cols_ && C.rows() == rows_ && C.cols() == B.cols(), "PackedMatrix: op(A) is (",
                      rows_, ", ", cols_, "), B is (", B.rows(), ", ", B.cols(), ") and C is (", C.rows(), ", ",
                      C.cols(), "); expected B (", cols_, ", N) and C (", rows_, ", N)");
    check<ShapeError>(0 <= p0 && p0 <= p1 && p1 <= panels(), "PackedMatrix: panels [", p0, ", ", p1,
                      ") are outside [0, ", panels(), ")");
    const Index r0 = p0 * kPanel, M = std::min(rows_, p1 * kPanel) - r0, N = B.cols(), K = cols_;
    if (M <= 0 || N == 0) return;
    if (K == 0) {
      if (!accumulate) C.middleRows(r0, M).setZero();
      return;
    }
#if SEQGEN_GEMM_AVX2
    if constexpr (std::is_same_v<Scalar, float>) {
      if (avx2_) {
        // Panels p0 … p1 − 1 are a packed (M, K) matrix of their own, starting at panel p0.
        const float* panels_a = data_.data() + p0 * kPanel * K;
        if (N == 1) {
          detail::avx2::gemv_packed_lhs(M, K, panels_a, B.data(), C.data() + r0, accumulate);
          return;
        }
        detail::GemmBuffers<float>& buffers = detail::thread_gemm_buffers<float>();
        buffers.reserve(0, std::size_t(detail::avx2::packed_b_size(N, K)));
        detail::avx2::gemm_packed_lhs(M, N, K, panels_a, B.data(), B.outerStride(), C.data() + r0, C.outerStride(),
                                      accumulate, buffers.b.data());
        return;
      }
    }
#endif
    if (N == 1) {  // a matrix-vector product, as in gemm()
      const Eigen::Map<const Mat<Scalar>, 0, Eigen::OuterStride<>> A(data_.data() + r0, M, K,
                                                                     Eigen::OuterStride<>(rows_));
      auto c = C.col(0).segment(r0, M);
      if (!accumulate) c.setZero();
      c.noalias() += A * B.col(0);
      return;
    }
    detail::gemm_serial<Scalar, false, false>(M, N, K, data_.data() + r0, rows_, B.data(), B.outerStride(),
                                              C.data() + r0, C.outerStride(), accumulate);
  }

 private:
  void grow(std::size_t size) {
    if (data_.size() < size) data_.resize(size);
  }

  Index rows_ = 0, cols_ = 0;
  bool avx2_ = false;  // the layout of data_: the AVX2 kernel's panels, or plain column-major
  std::vector<Scalar, Eigen::aligned_allocator<Scalar>> data_;
};

// C = op(A) op(B), or C += op(A) op(B) when accumulating; op(X) is Xᵀ when its flag is set.
// C must not overlap A or B.
template <typename Scalar>
void gemm(const ConstMatRef<Scalar>& A, bool transpose_a, const ConstMatRef<Scalar>& B, bool transpose_b,
          MatRef<Scalar> C, bool accumulate) {
  const Index M = transpose_a ? A.cols() : A.rows(), K = transpose_a ? A.rows() : A.cols();
  const Index KB = transpose_b ? B.cols() : B.rows(), N = transpose_b ? B.rows() : B.cols();
  check<ShapeError>(K == KB && C.rows() == M && C.cols() == N, "gemm: op(A) is (", M, ", ", K, "), op(B) is (", KB,
                    ", ", N, ") and C is (", C.rows(), ", ", C.cols(),
                    "); expected op(A) (M, K), op(B) (K, N), C (M, N)");
  if (N == 1) {
    // One column (a decoding step of one sequence): a matrix-vector product, which Eigen runs
    // without packing and without heap allocation.
    if (!accumulate) C.setZero();
    if (transpose_a && transpose_b) {
      C.col(0).noalias() += A.transpose() * B.row(0).transpose();
    } else if (transpose_a) {
      C.col(0).noalias() += A.transpose() * B.col(0);
    } else if (transpose_b) {
      C.col(0).noalias() += A * B.row(0).transpose();
    } else {
      C.col(0).noalias() += A * B.col(0);
    }
    return;
  }
  if (transpose_a) {
    if (transpose_b) {
      detail::gemm_threads<Scalar, true, true>(A, B, C, accumulate);
    } else {
      detail::gemm_threads<Scalar, true, false>(A, B, C, accumulate);
    }
  } else {
    if (transpose_b) {
      detail::gemm_threads<Scalar, false, true>(A, B, C, accumulate);
    } else {
      detail::gemm_threads<Scalar, false, false>(A, B, C, accumulate);
    }
  }
}

}  // namespace seqgen
