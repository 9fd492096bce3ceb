// The machine's peak single-precision FMA rate with 256-bit AVX2 vectors, for machines without
// the AVX-512 that ../shared/peers/fma_peak.cpp needs. Twelve independent FMA chains per thread
// hide the FMA latency, so the loop is bound by the FMA ports alone.
//   g++ -O3 -march=native -fopenmp bench/fma_peak_avx2.cpp -o fma_peak_avx2
//   OMP_NUM_THREADS=1 ./fma_peak_avx2; OMP_NUM_THREADS=2 ./fma_peak_avx2
// Not built by CMake: it is a probe of the machine, not of seqgen.
#include <immintrin.h>
#include <omp.h>
#include <chrono>
#include <cstdio>
int main() {
  const long iters = 200000000;
  double total_flops = 0; float sink = 0;
  auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : total_flops, sink)
  {
    __m256 a[12];
    for (int k = 0; k < 12; ++k) a[k] = _mm256_set1_ps(float(k));
    const __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
    for (long i = 0; i < iters; ++i)
      for (int k = 0; k < 12; ++k) a[k] = _mm256_fmadd_ps(a[k], x, y);
    __m256 s = a[0];
    for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, a[k]);
    float out[8]; _mm256_storeu_ps(out, s); sink += out[0];
    total_flops += double(iters) * 12 * 8 * 2;
  }
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("threads=%d peak=%.1f GFLOP/s (sink %g)\n", omp_get_max_threads(), total_flops / sec * 1e-9, sink);
}
