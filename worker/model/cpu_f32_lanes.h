// The one reduction order of the float32 kernels (cpu_f32.h), written twice: AVX2+FMA and
// scalar. Both must produce the same bits, so every step here is an IEEE operation with one
// rounding (a fused multiply-add or an add), in the same order; the files that include this
// are built with -ffp-contract=off so the compiler adds no fusions of its own.
#pragma once

#include <cmath>
#include <cstdint>

#include "worker/model/cpu_avx2.h"

#ifdef R1_HAVE_AVX2
#define R1_HAVE_F32_AVX2 1
#endif

namespace r1::model::f32 {

constexpr int64_t kLanes = 8;

inline int64_t RoundUpLanes(int64_t k) { return (k + kLanes - 1) / kLanes * kLanes; }

// The lane tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
inline float ReduceLanes(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// Lane sums: l[j] = fma(x[k + j], w[k + j], l[j]) for k = k0, k0 + 8, ... < k1, reading zeros
// at k >= K (k0 a multiple of 8, k1 <= RoundUpLanes(K)).
inline void LaneSums(const float* x, const float* w, int64_t k0, int64_t k1, int64_t K, float* l) {
  for (int64_t k = k0; k < k1; k += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const bool in = k + j < K;
      l[j] = std::fma(in ? x[k + j] : 0.f, in ? w[k + j] : 0.f, l[j]);
    }
}

// dot(x, w) over K in the lane order.
inline float Dot(const float* x, const float* w, int64_t K) {
  float l[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  LaneSums(x, w, 0, RoundUpLanes(K), K, l);
  return ReduceLanes(l);
}

#ifdef R1_HAVE_F32_AVX2

// The lane tree on a vector (SumLanes: the same tree as the scalar ReduceLanes above).
R1_TARGET_AVX2_FMA inline float ReduceLanes(__m256 v) { return SumLanes(v); }

// Lanes [0, n) set: the last partial group's loads (masked lanes read +0, as LaneSums does).
R1_TARGET_AVX2_FMA inline __m256i TailMask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

R1_TARGET_AVX2_FMA inline float DotAvx2(const float* x, const float* w, int64_t K) {
  __m256 a = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(w + k), a);
  if (k < K) {
    const __m256i m = TailMask(K - k);
    a = _mm256_fmadd_ps(_mm256_maskload_ps(x + k, m), _mm256_maskload_ps(w + k, m), a);
  }
  return ReduceLanes(a);
}

#endif

}  // namespace r1::model::f32
