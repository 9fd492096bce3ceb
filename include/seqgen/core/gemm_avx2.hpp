// The single-precision matrix product of gemm.hpp on x86-64 CPUs with AVX2 and FMA, chosen at run
// time, so it runs whether or not the program was compiled with -march=native.
//
//   C (M, N) = op(A) op(B)  or  C += op(A) op(B)      op(A): (M, K), op(B): (K, N), all column-major
//
// The classic blocked scheme (Goto and van de Geijn, 2008):
//   for each block of NC columns of C:
//     for each block of KC of the summed dimension:  pack op(B)[k block, j block] into panels of NR columns
//       for each block of MC rows of C:             pack op(A)[i block, k block] into panels of MR rows
//         for each NR-column panel of B, for each MR-row panel of A:
//           the micro-kernel: C[MR × NR tile] += A panel (MR × kc) · B panel (kc × NR)
// Packing lays each panel out in the order the kernel reads it (k-major: MR values of A, then NR
// values of B per step of k) and pads ragged edges with zeros, so the kernel never branches on
// shape; it also absorbs the transpositions. The tile is 16 × 6: two 8-float vectors of a column
// of C times 6 broadcast values of B, 12 accumulators in registers (AVX2 has 16), 12 fused
// multiply-adds for 2 loads and 6 broadcasts per step of k. A B panel (kc × 6) stays in L1 while
// the A block (MC × KC, 192 KB) streams from L2.
//
// Each k is summed in the same order whatever the tile's position, so a column of C does not
// depend on how the threads split C.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SEQGEN_GEMM_AVX2 1

#include <immintrin.h>

#include <algorithm>

#include "seqgen/core/tensor.hpp"

namespace seqgen {
namespace detail {
namespace avx2 {

constexpr Index kMR = 16, kNR = 6;                // micro-tile of C
constexpr Index kKC = 256, kMC = 192, kNC = 4092;  // cache blocks: kc × MC of A in L2, kc × NC of B in L3

inline bool supported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// Whether float products run this kernel (see set_avx2_kernel in gemm.hpp).
inline bool& enabled() {
  static bool on = supported();
  return on;
}

// Packing buffer sizes, in floats, for a product of at most (M, N) with these blocks.
inline Index packed_a_size(Index M, Index K) { return std::min(kKC, K) * (std::min(kMC, M) + kMR); }
inline Index packed_b_size(Index N, Index K) { return std::min(kKC, K) * (std::min(kNC, N) + kNR); }

// Eight rows of eight floats transposed in registers: r[q] becomes column q.
__attribute__((target("avx2,fma"), always_inline)) inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// The packings that are transposes (a full 16-row panel of a row-major op(A), a full 6-column
// panel of a column-major op(B)) move 8 steps of k at a time through transpose8 (copied one value
// at a time, the packings took about 12% of gpt_s's training step on one thread, by perf). The
// last kc mod 8 steps are copied one at a time.
__attribute__((target("avx2,fma"))) inline void pack_a_rows16(Index kc, const float* a, Index lda, float* out) {
  Index k0 = 0;
  for (; k0 + 8 <= kc; k0 += 8)
    for (Index h = 0; h < kMR; h += 8) {  // rows h … h + 7 of the panel
      __m256 r[8];
      for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(a + (h + q) * lda + k0);
      transpose8(r);
      for (int q = 0; q < 8; ++q) _mm256_storeu_ps(out + (k0 + q) * kMR + h, r[q]);
    }
  for (; k0 < kc; ++k0)
    for (Index i = 0; i < kMR; ++i) out[k0 * kMR + i] = a[i * lda + k0];
}

__attribute__((target("avx2,fma"))) inline void pack_b_columns6(Index kc, const float* b, Index ldb, float* out) {
  Index k0 = 0;
  for (; k0 + 8 <= kc; k0 += 8) {
    __m256 r[8];
    for (int j = 0; j < kNR; ++j) r[j] = _mm256_loadu_ps(b + j * ldb + k0);
    r[6] = r[7] = _mm256_setzero_ps();
    transpose8(r);
    // Step q's 6 values, and 2 zeros that step q + 1 overwrites (a masked store is slow on AMD);
    // the last step stores its 6 values only.
    for (int q = 0; q < 7; ++q) _mm256_storeu_ps(out + (k0 + q) * kNR, r[q]);
    float* last = out + (k0 + 7) * kNR;
    _mm_storeu_ps(last, _mm256_castps256_ps128(r[7]));
    _mm_storel_pi(reinterpret_cast<__m64*>(last + 4), _mm256_extractf128_ps(r[7], 1));
  }
  for (; k0 < kc; ++k0)
    for (Index j = 0; j < kNR; ++j) out[k0 * kNR + j] = b[j * ldb + k0];
}

// op(A)[0..mc, 0..kc] into mc/MR panels, each kc steps of MR rows (zeros past row mc).
// op(A)(i, k) is a[i + k·lda], or a[k + i·lda] when transposed.
template <bool TransA>
void pack_a(Index mc, Index kc, const float* a, Index lda, float* out) {
  for (Index i0 = 0; i0 < mc; i0 += kMR, out += kc * kMR) {
    const Index m = std::min(kMR, mc - i0);
    if (TransA && m == kMR) {  // a row of op(A) is contiguous: 16 rows transposed into the panel
      pack_a_rows16(kc, a + i0 * lda, lda, out);
    } else if (TransA) {
      for (Index r = 0; r < m; ++r) {
        const float* src = a + (i0 + r) * lda;
        for (Index k = 0; k < kc; ++k) out[k * kMR + r] = src[k];
      }
      for (Index r = m; r < kMR; ++r)
        for (Index k = 0; k < kc; ++k) out[k * kMR + r] = 0;
    } else if (m == kMR) {  // a column of op(A) is contiguous: MR values per k
      for (Index k = 0; k < kc; ++k)
        for (Index r = 0; r < kMR; ++r) out[k * kMR + r] = a[i0 + r + k * lda];
    } else {
      for (Index k = 0; k < kc; ++k)
        for (Index r = 0; r < kMR; ++r) out[k * kMR + r] = r < m ? a[i0 + r + k * lda] : 0.0f;
    }
  }
}

// op(B)[0..kc, 0..nc] into nc/NR panels, each kc steps of NR columns (zeros past column nc).
// op(B)(k, j) is b[k + j·ldb], or b[j + k·ldb] when transposed.
template <bool TransB>
void pack_b(Index kc, Index nc, const float* b, Index ldb, float* out) {
  for (Index j0 = 0; j0 < nc; j0 += kNR, out += kc * kNR) {
    const Index n = std::min(kNR, nc - j0);
    if (TransB && n == kNR) {  // a row of op(B) is contiguous: NR values per k
      for (Index k = 0; k < kc; ++k)
        for (Index j = 0; j < kNR; ++j) out[k * kNR + j] = b[j0 + j + k * ldb];
    } else if (TransB) {
      for (Index k = 0; k < kc; ++k)
        for (Index j = 0; j < kNR; ++j) out[k * kNR + j] = j < n ? b[j0 + j + k * ldb] : 0.0f;
    } else if (n == kNR) {  // a column of op(B) is contiguous: 6 columns transposed into the panel
      pack_b_columns6(kc, b + j0 * ldb, ldb, out);
    } else {
      for (Index j = 0; j < n; ++j) {
        const float* src = b + (j0 + j) * ldb;
        for (Index k = 0; k < kc; ++k) out[k * kNR + j] = src[k];
      }
      for (Index j = n; j < kNR; ++j)
        for (Index k = 0; k < kc; ++k) out[k * kNR + j] = 0;
    }
  }
}

// Rows [0, m) of a 16-row panel's sums t (lo: rows 0-7, hi: 8-15) into c: c = t, or c += t when `add`.
// Always inlined: called once per column of every tile, it must not take the sums through memory.
__attribute__((target("avx2,fma"), always_inline)) inline void store_column(__m256 lo, __m256 hi, float* c, Index m,
                                                                            bool add) {
  if (m == kMR) {
    if (add) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(c));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + 8));
    }
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
    return;
  }
  alignas(32) float t[kMR];
  _mm256_store_ps(t, lo);
  _mm256_store_ps(t + 8, hi);
  for (Index r = 0; r < m; ++r) c[r] = add ? c[r] + t[r] : t[r];
}

// The micro-kernel: the 16 × 6 tile T = Σ_k a[16k .. 16k+15] ⊗ b[6k .. 6k+5], then
// C[0..m, 0..n] = T (or += T when `add`), m ≤ 16 and n ≤ 6 for a tile at the edge of C.
__attribute__((target("avx2,fma"))) inline void kernel_16x6(Index kc, const float* a, const float* b, float* c,
                                                             Index ldc, bool add, Index m, Index n) {
  __m256 t00 = _mm256_setzero_ps(), t01 = _mm256_setzero_ps(), t10 = _mm256_setzero_ps(),
         t11 = _mm256_setzero_ps(), t20 = _mm256_setzero_ps(), t21 = _mm256_setzero_ps(),
         t30 = _mm256_setzero_ps(), t31 = _mm256_setzero_ps(), t40 = _mm256_setzero_ps(),
         t41 = _mm256_setzero_ps(), t50 = _mm256_setzero_ps(), t51 = _mm256_setzero_ps();
  for (Index j = 0; j < n; ++j) {  // C's tile comes in from memory while the products run
    _mm_prefetch(reinterpret_cast<const char*>(c + j * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + j * ldc + m - 1), _MM_HINT_T0);
  }
  for (Index k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m256 a0 = _mm256_loadu_ps(a), a1 = _mm256_loadu_ps(a + 8);
    __m256 bj = _mm256_broadcast_ss(b);
    t00 = _mm256_fmadd_ps(a0, bj, t00);
    t01 = _mm256_fmadd_ps(a1, bj, t01);
    bj = _mm256_broadcast_ss(b + 1);
    t10 = _mm256_fmadd_ps(a0, bj, t10);
    t11 = _mm256_fmadd_ps(a1, bj, t11);
    bj = _mm256_broadcast_ss(b + 2);
    t20 = _mm256_fmadd_ps(a0, bj, t20);
    t21 = _mm256_fmadd_ps(a1, bj, t21);
    bj = _mm256_broadcast_ss(b + 3);
    t30 = _mm256_fmadd_ps(a0, bj, t30);
    t31 = _mm256_fmadd_ps(a1, bj, t31);
    bj = _mm256_broadcast_ss(b + 4);
    t40 = _mm256_fmadd_ps(a0, bj, t40);
    t41 = _mm256_fmadd_ps(a1, bj, t41);
    bj = _mm256_broadcast_ss(b + 5);
    t50 = _mm256_fmadd_ps(a0, bj, t50);
    t51 = _mm256_fmadd_ps(a1, bj, t51);
  }
  const __m256 tile[kNR][2] = {{t00, t01}, {t10, t11}, {t20, t21}, {t30, t31}, {t40, t41}, {t50, t51}};
  for (Index j = 0; j < kNR; ++j)  // a fixed count, so that the tile stays in registers
    if (j < n) store_column(tile[j][0], tile[j][1], c + j * ldc, m, add);
}

// C = op(A) op(B), or C += op(A) op(B) when `accumulate`, on the calling thread; packed_a and
// packed_b hold packed_a_size(M, K) and packed_b_size(N, K) floats. K = 0 is handled by the caller.
template <bool TransA, bool TransB>
void gemm(Index M, Index N, Index K, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc,
          bool accumulate, float* packed_a, float* packed_b) {
  for (Index jc = 0; jc < N; jc += kNC) {
    const Index nc = std::min(kNC, N - jc);
    for (Index pc = 0; pc < K; pc += kKC) {
      const Index kc = std::min(kKC, K - pc);
      const bool add = accumulate || pc > 0;  // the first k block assigns C unless accumulating
      pack_b<TransB>(kc, nc, TransB ? b + jc + pc * ldb : b + pc + jc * ldb, ldb, packed_b);
      for (Index ic = 0; ic < M; ic += kMC) {
        const Index mc = std::min(kMC, M - ic);
        pack_a<TransA>(mc, kc, TransA ? a + pc + ic * lda : a + ic + pc * lda, lda, packed_a);
        for (Index jr = 0; jr < nc; jr += kNR) {
          for (Index ir = 0; ir < mc; ir += kMR) {
            kernel_16x6(kc, packed_a + ir * kc, packed_b + jr * kc, c + (ic + ir) + (jc + jr) * ldc, ldc, add,
                        std::min(kMR, mc - ir), std::min(kNR, nc - jr));
          }
        }
      }
    }
  }
}

// A whole op(A) (M, K) packed once, for many products with different B, is pack_a(M, K, …): its
// M/MR panels one after another, each over all of K. The k block [pc, pc + kc) of panel p is the
// contiguous kc·MR floats at p·MR·K + pc·MR, which is what the kernel reads.
inline Index packed_lhs_size(Index M, Index K) { return (M + kMR - 1) / kMR * kMR * K; }

// C = op(A) B, or C += op(A) B when `accumulate`, with op(A) packed whole by pack_a; packed_b holds
// packed_b_size(N, K) floats. B is not transposed. The loop runs over A's panels outermost: a
// panel (kc × MR) stays in L1 while it meets every panel of the block of B, so op(A), which is
// larger than L2 for a recurrent layer's weights (4H × H), is read once per product.
inline void gemm_packed_lhs(Index M, Index N, Index K, const float* packed_a, const float* b, Index ldb, float* c,
                            Index ldc, bool accumulate, float* packed_b) {
  for (Index jc = 0; jc < N; jc += kNC) {
    const Index nc = std::min(kNC, N - jc);
    for (Index pc = 0; pc < K; pc += kKC) {
      const Index kc = std::min(kKC, K - pc);
      const bool add = accumulate || pc > 0;
      pack_b<false>(kc, nc, b + pc + jc * ldb, ldb, packed_b);
      for (Index ir = 0; ir < M; ir += kMR) {
        const float* panel = packed_a + ir * K + pc * kMR;
        for (Index jr = 0; jr < nc; jr += kNR) {
          kernel_16x6(kc, panel, packed_b + jr * kc, c + ir + (jc + jr) * ldc, ldc, add, std::min(kMR, M - ir),
                      std::min(kNR, nc - jr));
        }
      }
    }
  }
}

// P ≤ 4 panels of a packed op(A) (rows [16·p0, 16·p0 + 16·P)) times one column b, over the k block
// [pc, pc + kc). Each row is summed in the micro-kernel's order (one fused multiply-add per k, in
// order, from zero, then added to C), so a column comes out the same as through kernel_16x6. Four
// panels give 8 independent sums, enough to hide the latency of the multiply-adds; they are named
// variables so that the compiler keeps them in registers.
template <int P>
__attribute__((target("avx2,fma"))) inline void gemv_panels(Index M, Index K, Index p0, Index pc, Index kc,
                                                             const float* packed_a, const float* b, float* c,
                                                             bool add) {
  static_assert(P >= 1 && P <= 4, "one to four panels");
  __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0;
  const Index stride = kMR * K;  // from one panel to the next
  const float* a = packed_a + p0 * stride + pc * kMR;
  // Unrolled: the loop's own instructions would otherwise be a quarter of the work (the sums
  // still run one k after another, in order).
#pragma GCC unroll 4
  for (Index k = 0; k < kc; ++k, a += kMR) {
    const __m256 bk = _mm256_broadcast_ss(b + pc + k);
    lo0 = _mm256_fmadd_ps(_mm256_loadu_ps(a), bk, lo0);
    hi0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8), bk, hi0);
    if constexpr (P > 1) {
      lo1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + stride), bk, lo1);
      hi1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + stride + 8), bk, hi1);
    }
    if constexpr (P > 2) {
      lo2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * stride), bk, lo2);
      hi2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * stride + 8), bk, hi2);
    }
    if constexpr (P > 3) {
      lo3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 3 * stride), bk, lo3);
      hi3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 3 * stride + 8), bk, hi3);
    }
  }
  const __m256 sums[4][2] = {{lo0, hi0}, {lo1, hi1}, {lo2, hi2}, {lo3, hi3}};
  for (int p = 0; p < P; ++p) {
    const Index r0 = (p0 + p) * kMR;
    store_column(sums[p][0], sums[p][1], c + r0, std::min(kMR, M - r0), add);
  }
}

// C (M, 1) = op(A) b, or += when `accumulate`, with op(A) packed whole by pack_a: a product with one
// column (a single sequence) reads the packed panels directly, without packing b or filling a
// 16 × 6 tile of which five columns would be wasted.
inline void gemv_packed_lhs(Index M, Index K, const float* packed_a, const float* b, float* c, bool accumulate) {
  const Index panels = (M + kMR - 1) / kMR;
  for (Index pc = 0; pc < K; pc += kKC) {
    const Index kc = std::min(kKC, K - pc);
    const bool add = accumulate || pc > 0;
    Index p0 = 0;
    for (; p0 + 4 <= panels; p0 += 4) gemv_panels<4>(M, K, p0, pc, kc, packed_a, b, c, add);
    if (panels - p0 == 3) gemv_panels<3>(M, K, p0, pc, kc, packed_a, b, c, add);
    if (panels - p0 == 2) gemv_panels<2>(M, K, p0, pc, kc, packed_a, b, c, add);
    if (panels - p0 == 1) gemv_panels<1>(M, K, p0, pc, kc, packed_a, b, c, add);
  }
}

}  // namespace avx2
}  // namespace detail
}  // namespace seqgen

#endif
