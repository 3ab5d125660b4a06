// AVX2 helpers shared by the CPU kernels (cpu_f32_lanes.h, cpu_int4.cc). Only additions here,
// so the float32 kernels' fixed reduction order holds whatever -ffp-contract a file uses.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#define R1_HAVE_AVX2 1
#include <immintrin.h>
#define R1_TARGET_AVX2_FMA __attribute__((target("avx2,fma")))

namespace r1::model {

// The sum of a vector's eight lanes, in one fixed tree: the high half onto the low
// (l_j + l_{j+4}), then the upper pair onto the lower, then lane 1 onto lane 0.
R1_TARGET_AVX2_FMA inline float SumLanes(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace r1::model
#endif
