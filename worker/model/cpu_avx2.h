// AVX2 helpers shared by the CPU kernels (cpu_f32_lanes.h, cpu_int4.cc, cpu_int8.cc). Only additions here,
// so the float32 kernels' fixed reduction order holds whatever -ffp-contract a file uses.
#pragma once

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#define R1_HAVE_AVX2 1
#include <immintrin.h>
#define R1_TARGET_AVX2_FMA __attribute__((target("avx2,fma")))
// AVX512 with VNNI (vpdpbusd), for the int8 and int4 GEMMs: callers check the CPU first
// (Int8IsaAvailable in cpu_int8.h).
#define R1_TARGET_AVX512_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace r1::model {

// The VNNI decode kernels' software prefetch of a thread's weight stream (cpu_int4.cc,
// cpu_int8.cc): the 64-byte line kStreamPrefetchL2Bytes past `line` into L2 (prefetcht1), the
// one kStreamPrefetchL1Bytes past it into L1 (prefetcht0). Prefetching into L1 alone, 4 KiB
// ahead, holds an L1 miss buffer a line for the whole trip to memory, and both loops stalled
// there (bench/results/cpu-int4-decode-ab-linear.log, cpu-int8-decode-ab-linear.log).
inline constexpr int64_t kStreamPrefetchL2Bytes = 4096, kStreamPrefetchL1Bytes = 512;
inline void PrefetchStream(const void* line) {
  _mm_prefetch(static_cast<const char*>(line) + kStreamPrefetchL2Bytes, _MM_HINT_T1);
  _mm_prefetch(static_cast<const char*>(line) + kStreamPrefetchL1Bytes, _MM_HINT_T0);
}

// The sum of a vector's eight lanes, in one fixed tree: the high half onto the low
// (l_j + l_{j+4}), then the upper pair onto the lower, then lane 1 onto lane 0.
R1_TARGET_AVX2_FMA inline float SumLanes(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One step of the int4 VNNI GEMM's microkernel (cpu_int4.cc; cpu_int8.cc writes its own out,
// see there): MB vectors of packed x
// (at xp + b * stride; 16 rows, 4 columns each) against NR weight rows' 4-byte words `wv`
// broadcast, into acc[r][b] with vpdpbusd. `XUnsigned`: x is the unsigned operand (int8: q +
// 128), else the weights are (int4 nibbles). Inlined and unrolled so acc stays in registers.
template <int NR, int MB, bool XUnsigned>
__attribute__((always_inline)) R1_TARGET_AVX512_VNNI inline void VnniGemmStep(
    __m512i (&acc)[NR][MB], const void* xp, int64_t stride, const int32_t (&wv)[NR]) {
  __m512i xv[MB];
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) xv[b] = _mm512_loadu_si512(static_cast<const char*>(xp) + b * stride);
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) {
    const __m512i wb = _mm512_set1_epi32(wv[r]);
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b)
      acc[r][b] = XUnsigned ? _mm512_dpbusd_epi32(acc[r][b], xv[b], wb) : _mm512_dpbusd_epi32(acc[r][b], wb, xv[b]);
  }
}

// The VNNI GEMMs' tiles hold NR output columns of `width` rows each (one row per int32 lane);
// y takes rows [0, rows) of them: y[i * ldy + r] = tile[r * width + i].
template <int NR>
inline void StoreTransposed(const float* tile, int64_t width, int64_t rows, float* y, int64_t ldy) {
  for (int64_t i = 0; i < rows; ++i)
    for (int r = 0; r < NR; ++r) y[i * ldy + r] = tile[r * width + i];
}

}  // namespace r1::model
#endif
