// FP8 e4m3 on the host, torch-free: the "e4m3fn" format of FP8 checkpoints and of
// --quantization fp8 (1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits; no infinities;
// 0x7f and 0xff are NaN; the largest finite value is 448). r1-mkmodel writes FP8 checkpoints
// with these; the GPU's QuantizeFp8Rows (cuda/kernels.h) computes the same bytes.
#pragma once

#include <cmath>
#include <cstdint>

namespace r1::model {

inline float E4m3ToFloat(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 15 && m == 7) {
    v = NAN;
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -9);  // subnormal: m / 8 * 2^-6
  } else {
    v = std::ldexp(1.f + static_cast<float>(m) / 8.f, e - 7);
  }
  return (b & 0x80) ? -v : v;
}

// The nearest e4m3 value, ties to even, magnitudes of 448 and more saturated to 448 (as CUDA's
// __nv_cvt_float_to_fp8 with __NV_SATFINITE); NaN gives 0x7f.
inline uint8_t FloatToE4m3(float v) {
  if (std::isnan(v)) return 0x7f;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const float a = std::fabs(v);
  if (a >= 448.f) return sign | 0x7e;
  // Non-negative codes 0 .. 0x7e are ordered by value: the largest one not above a, then the
  // nearer of it and the next (both have few bits, so their midpoint is exact in float).
  int lo = 0, hi = 0x7e;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (E4m3ToFloat(static_cast<uint8_t>(mid)) <= a) lo = mid; else hi = mid - 1;
  }
  const float below = E4m3ToFloat(static_cast<uint8_t>(lo)), above = E4m3ToFloat(static_cast<uint8_t>(lo + 1));
  const float half = (below + above) / 2;
  if (a > half || (a == half && (lo & 1))) ++lo;
  return static_cast<uint8_t>(sign | lo);
}

// Each row of x [rows, K] as e4m3 with one scale, as QuantizeFp8Rows does on the GPU:
// scale[r] = max |x[r, :]| / 448 (0 for a row of zeros), q[r, k] = e4m3(x[r, k] * (448 / max)).
inline void QuantizeFp8RowsHost(const float* x, int64_t rows, int64_t K, uint8_t* q, float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * K;
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(xr[k]));
    const float inv = amax > 0.f ? 448.f / amax : 0.f;
    for (int64_t k = 0; k < K; ++k) q[r * K + k] = FloatToE4m3(xr[k] * inv);
    scale[r] = amax / 448.f;
  }
}

}  // namespace r1::model
