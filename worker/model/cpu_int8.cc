#include "worker/model/cpu_int8.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/log.h"
#include "worker/model/cpu_avx2.h"
#include "worker/model/cpu_parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define R1_HAVE_AVX2_INT8_KERNEL 1
// GCC 12 warns about an uninitialised variable inside its own _mm512_reduce_add_epi32 when it is
// inlined here (a false positive in avx512fintrin.h, as in cpu_gemm.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
// Without "fma": the epilogue's multiply and add must round separately, as ATen's do (and the
// file is built with -ffp-contract=off, so the VNNI target's FMA is not used either).
#define R1_TARGET_AVX2 __attribute__((target("avx2")))
#define R1_TARGET_VNNI R1_TARGET_AVX512_VNNI
#else
#define R1_TARGET_AVX2
#endif

namespace r1::model {
namespace {

float RowScale(float amax) { return amax > 0.f ? amax / 127.f : 1.f; }

int8_t QuantizeValue(float v, float scale) {
  const float r = std::nearbyint(v / scale);  // round half to even, as torch.round
  return static_cast<int8_t>(std::clamp(r, -127.f, 127.f));
}

// Row `src` (K floats) into q (and |q| when `abs` is set); returns the scale.
float QuantizeRow(const float* src, int64_t K, int8_t* q, uint8_t* abs) {
  const float scale = QuantizeInt8Row(src, K, q);
  if (abs)
    for (int64_t k = 0; k < K; ++k) abs[k] = static_cast<uint8_t>(q[k] < 0 ? -q[k] : q[k]);
  return scale;
}

// The VNNI GEMM takes x 16 rows at a time (one row per int32 lane), from 16 rows up.
constexpr int64_t kGemmMinRows = 16;

// The activations of one call, quantized: rows padded with zeros to a multiple of 64 bytes,
// plus what the chosen kernel reads besides.
struct QuantizedX {
  int64_t M = 0, K = 0, ld = 0;
  std::vector<int8_t> q;
  std::vector<float> scale;     // [M]; for the GEMM, padded with ones to whole groups of 16
  std::vector<uint8_t> abs;     // AVX2: |q|
  std::vector<int32_t> sum;     // VNNI, fewer than 16 rows: Σ_k q[m, k]
  // VNNI GEMM: q + 128 in groups of 16 rows, 4 columns to an int32 lane: the 64 bytes at
  // (g * k4 + j) * 64 hold columns 4j..4j+3 of rows 16g..16g+15 (rows past M are 0).
  std::vector<uint8_t> packed;
  int64_t k4 = 0;               // ceil(K / 4)
};

void PackForGemm(QuantizedX& x) {
  const int64_t groups = (x.M + 15) / 16;
  x.k4 = (x.K + 3) / 4;
  x.packed.assign(static_cast<size_t>(groups * x.k4 * 64), 0);
  x.scale.resize(static_cast<size_t>(groups * 16), 1.f);
  ParallelChunks(x.M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int8_t* row = x.q.data() + m * x.ld;  // zero past K: 128 there, times a zero weight
      uint8_t* dst = x.packed.data() + (m / 16) * x.k4 * 64 + (m % 16) * 4;
      for (int64_t j = 0; j < x.k4; ++j) {
        uint32_t v;
        std::memcpy(&v, row + 4 * j, 4);
        v ^= 0x80808080u;  // q + 128, byte by byte
        std::memcpy(dst + j * 64, &v, 4);
      }
    }
  });
}

QuantizedX QuantizeActivations(const at::Tensor& x, Int8Isa isa) {
  const std::vector<float> xf = FloatRows(x);
  QuantizedX out;
  out.M = x.size(0);
  out.K = x.size(1);
  out.ld = (out.K + 63) / 64 * 64;
  out.q.assign(static_cast<size_t>(out.M * out.ld), 0);
  const bool vnni = isa == Int8Isa::kAvx512Vnni;
  if (!vnni) out.abs.assign(out.q.size(), 0);
  out.scale.resize(static_cast<size_t>(out.M));
  const float* src = xf.data();
  ParallelChunks(out.M, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, out.K)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      out.scale[m] = QuantizeRow(src + m * out.K, out.K, out.q.data() + m * out.ld,
                                 vnni ? nullptr : out.abs.data() + m * out.ld);
  });
  if (vnni && out.M >= kGemmMinRows) {
    PackForGemm(out);
  } else if (vnni) {
    out.sum.resize(static_cast<size_t>(out.M));
    for (int64_t m = 0; m < out.M; ++m) {
      int32_t s = 0;
      for (int64_t k = 0; k < out.K; ++k) s += out.q[m * out.ld + k];
      out.sum[m] = s;
    }
  }
  return out;
}

// Where each output goes: y[m, n] = float(acc) * (xscale[m] * wscale[n]) (+ bias[n]).
struct Output {
  const float* wscale;
  const float* bias;
  float* y;
  int64_t N;
  void Store(const QuantizedX& x, int64_t m, int64_t n, int32_t acc) const {
    float v = static_cast<float>(acc) * (x.scale[m] * wscale[n]);
    if (bias) v += bias[n];
    y[m * N + n] = v;
  }
};

#ifdef R1_HAVE_AVX2_INT8_KERNEL

R1_TARGET_AVX2 inline int32_t HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// acc += the int32 pair sums of x * w for 32 bytes: x's values (xs) and magnitudes (xu), w's
// values (wv).
R1_TARGET_AVX2 inline __m256i MulAdd(__m256i acc, __m256i wv, __m256i xs, __m256i xu) {
  const __m256i p = _mm256_maddubs_epi16(xu, _mm256_sign_epi8(wv, xs));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

// Sums over k of xq[m] * w[r] for NR rows of W (row stride K) and MR rows of x (stride ld),
// into acc[r][m]. x * w = |x| * (w with x's sign): vpmaddubsw multiplies unsigned by signed
// bytes and adds pairs into int16 (at most 2 * 127 * 127, no saturation), vpmaddwd by ones
// widens the pairs into int32.
template <int NR, int MR>
R1_TARGET_AVX2 inline void DotTile(const int8_t* w, int64_t K, const int8_t* xq, const uint8_t* xa,
                                   int64_t ld, int32_t acc[NR][MR]) {
  __m256i sum[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) sum[r][m] = _mm256_setzero_si256();
  const int64_t K32 = K / 32 * 32;
  for (int64_t k = 0; k < K32; k += 32) {
    __m256i xs[MR], xu[MR];
    for (int m = 0; m < MR; ++m) {
      xs[m] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * ld + k));
      xu[m] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa + m * ld + k));
    }
    for (int r = 0; r < NR; ++r) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * K + k));
      for (int m = 0; m < MR; ++m) sum[r][m] = MulAdd(sum[r][m], wv, xs[m], xu[m]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) {
      int32_t s = HorizontalSum(sum[r][m]);
      for (int64_t k = K32; k < K; ++k) s += int32_t{xq[m * ld + k]} * int32_t{w[r * K + k]};
      acc[r][m] = s;
    }
}

// MulAdd over the 32 bytes at k of one row of W and one of x.
R1_TARGET_AVX2 inline __m256i DotStep(__m256i acc, const int8_t* w, const int8_t* xq,
                                      const uint8_t* xa, int64_t k) {
  return MulAdd(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k)),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k)),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa + k)));
}

constexpr int64_t kPrefetchBytes = 1024;

// One row of x against one row of W, four 32-byte steps at a time into four accumulators:
// the decode step's shape, where each thread reads its weight rows as one sequential stream.
R1_TARGET_AVX2 inline int32_t DotRow(const int8_t* w, int64_t K, const int8_t* xq, const uint8_t* xa) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 128 <= K; k += 128) {
    // The weights kPrefetchBytes ahead (into the next rows: a thread's rows are contiguous);
    // the hardware prefetcher alone leaves decode waiting on memory.
    _mm_prefetch(reinterpret_cast<const char*>(w + k) + kPrefetchBytes, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + k) + kPrefetchBytes + 64, _MM_HINT_T0);
    a0 = DotStep(a0, w, xq, xa, k);
    a1 = DotStep(a1, w, xq, xa, k + 32);
    a2 = DotStep(a2, w, xq, xa, k + 64);
    a3 = DotStep(a3, w, xq, xa, k + 96);
  }
  for (; k + 32 <= K; k += 32) a0 = DotStep(a0, w, xq, xa, k);
  int32_t s = HorizontalSum(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)));
  for (; k < K; ++k) s += int32_t{xq[k]} * int32_t{w[k]};
  return s;
}

#endif  // R1_HAVE_AVX2_INT8_KERNEL

// y[m, n] for rows [n0, n1) of W with the AVX2 kernel: the int32 dot products, then the
// scales and the bias.
R1_TARGET_AVX2 void Avx2Rows(const QuantizedX& x, const int8_t* w, const Output& out, int64_t n0, int64_t n1) {
  const int64_t M = x.M, K = x.K, ld = x.ld;
  // x rows in blocks that stay in L2 while the chunk's weight rows pass over them.
  const int64_t mblock = std::max<int64_t>(4, (256 << 10) / (2 * ld));
  for (int64_t mb = 0; mb < M; mb += mblock) {
    const int64_t me = std::min(M, mb + mblock);
    int64_t n = n0;
#ifdef R1_HAVE_AVX2_INT8_KERNEL
    // One row: short rows read best as one stream (DotRow), long ones four rows at a time
    // (here, over 40 copies of each 1.5B shape: gate/up, K 1536, 13 GB/s against 11; down,
    // K 8960, 15 GB/s against 11).
    if (M == 1 && K <= 4096) {
      for (; n < n1; ++n) out.Store(x, 0, n, DotRow(w + n * K, K, x.q.data(), x.abs.data()));
      continue;
    }
    for (; n + 4 <= n1; n += 4) {
      int64_t m = mb;
      for (; m + 2 <= me; m += 2) {
        int32_t acc[4][2];
        DotTile<4, 2>(w + n * K, K, x.q.data() + m * ld, x.abs.data() + m * ld, ld, acc);
        for (int r = 0; r < 4; ++r)
          for (int j = 0; j < 2; ++j) out.Store(x, m + j, n + r, acc[r][j]);
      }
      for (; m < me; ++m) {
        int32_t acc[4][1];
        DotTile<4, 1>(w + n * K, K, x.q.data() + m * ld, x.abs.data() + m * ld, ld, acc);
        for (int r = 0; r < 4; ++r) out.Store(x, m, n + r, acc[r][0]);
      }
    }
    for (; n < n1; ++n)
      for (int64_t m = mb; m < me; ++m) {
        int32_t acc[1][1];
        DotTile<1, 1>(w + n * K, K, x.q.data() + m * ld, x.abs.data() + m * ld, ld, acc);
        out.Store(x, m, n, acc[0][0]);
      }
#else
    for (; n < n1; ++n)
      for (int64_t m = mb; m < me; ++m) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += int32_t{x.q[m * ld + k]} * int32_t{w[n * K + k]};
        out.Store(x, m, n, s);
      }
#endif
  }
}

#ifdef R1_HAVE_AVX2_INT8_KERNEL

// ---- AVX512-VNNI ----
// vpdpbusd adds to each int32 lane the four products of its unsigned bytes in one operand with
// the signed bytes in the other (exact: |sum| <= 255 * 127 * K, under 2^31 for K < 66,000).

// Decode: one row of x against NR rows of W (x's rows signed, the weights offset to unsigned
// by flipping their top bit, w + 128), 64 columns a step; acc[r][m] = Σ_k xq[m, k] w[r, k],
// 128 * Σ_k xq[m, k] taken off. Masked loads read zeros past K (and x is zero there).
template <int NR, int MR>
R1_TARGET_VNNI inline void VnniDotTile(const int8_t* w, int64_t K, const int8_t* xq, int64_t ld,
                                       const int32_t* xsum, int32_t acc[NR][MR]) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i sum[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) sum[r][m] = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 64) {
    const __mmask64 mask = K - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (K - k)) - 1;
    __m512i xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm512_loadu_si512(xq + m * ld + k);
    for (int r = 0; r < NR; ++r) {
      const __m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, w + r * K + k), flip);
      for (int m = 0; m < MR; ++m) sum[r][m] = _mm512_dpbusd_epi32(sum[r][m], wv, xv[m]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_reduce_add_epi32(sum[r][m]) - 128 * xsum[m];
}

// acc += the four-column sums of xq and (w + 128) over the 64 bytes at k.
R1_TARGET_VNNI inline __m512i VnniStep(__m512i acc, const int8_t* w, const int8_t* xq, int64_t k) {
  const __m512i wv = _mm512_xor_si512(_mm512_loadu_si512(w + k), _mm512_set1_epi8(static_cast<char>(0x80)));
  return _mm512_dpbusd_epi32(acc, wv, _mm512_loadu_si512(xq + k));
}

// VnniDotTile<1, 1> for a whole row, 256 bytes a step into four accumulators, each line
// prefetched (PrefetchStream, cpu_avx2.h): decode's shape, one sequential stream per thread.
R1_TARGET_VNNI inline int32_t VnniDotRow(const int8_t* w, int64_t K, const int8_t* xq, int32_t xsum) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 256 <= K; k += 256) {
    for (int64_t p = 0; p < 256; p += 64) PrefetchStream(w + k + p);
    a0 = VnniStep(a0, w, xq, k);
    a1 = VnniStep(a1, w, xq, k + 64);
    a2 = VnniStep(a2, w, xq, k + 128);
    a3 = VnniStep(a3, w, xq, k + 192);
  }
  for (; k + 64 <= K; k += 64) a0 = VnniStep(a0, w, xq, k);
  if (k < K) {
    const __mmask64 mask = (__mmask64{1} << (K - k)) - 1;
    const __m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, w + k), _mm512_set1_epi8(static_cast<char>(0x80)));
    a1 = _mm512_dpbusd_epi32(a1, wv, _mm512_loadu_si512(xq + k));
  }
  const __m512i s = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
  return _mm512_reduce_add_epi32(s) - 128 * xsum;
}

// Σ_k w[k] over one weight row (vpdpbusd against bytes of 1).
R1_TARGET_VNNI inline int32_t RowSum(const int8_t* w, int64_t K) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 64) {
    const __mmask64 mask = K - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (K - k)) - 1;
    acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(mask, w + k));
  }
  return _mm512_reduce_add_epi32(acc);
}

// Four bytes of a weight row, zeros past its end (`left` bytes remain in the row).
inline int32_t Load4(const int8_t* w, int64_t left) {
  int32_t v = 0;
  std::memcpy(&v, w, static_cast<size_t>(std::min<int64_t>(4, left)));
  return v;
}

// The GEMM's microkernel: NR rows of W (starting at row n) against MB groups of 16 rows of x
// (starting at group g), over all of K, into NR x MB vectors of 16 int32 sums. Each step loads
// MB vectors of packed x (4 columns of 16 rows) and broadcasts 4 bytes of each weight row; the
// (q + 128) offset comes off with the weight rows' sums. Then the epilogue, in float32 as
// Output::Store computes it, transposed through a small tile into y's rows.
template <int NR, int MB>
R1_TARGET_VNNI void GemmTile(const QuantizedX& x, const int8_t* w, const int32_t* wsum, const Output& out,
                             int64_t n, int64_t g) {
  const int64_t K = x.K, full = K / 4, stride = x.k4 * 64;
  const uint8_t* xp = x.packed.data() + g * stride;
  const int8_t* wr = w + n * K;
  // Every loop over NR and MB unrolled, so the accumulators stay in registers.
  __m512i acc[NR][MB];
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) acc[r][b] = _mm512_setzero_si512();
  // (Written out rather than through cpu_avx2.h's VnniGemmStep: with it GCC 12 kept this
  // kernel's accumulators in memory, 520-650 GOP/s against 1,000-1,390 on the 1.5B's shapes.)
  for (int64_t j = 0; j <= full; ++j) {
    // The last step, when K % 4 columns are left, takes the weights' bytes up to K, zeros after.
    if (j == full && full == x.k4) break;
    const int8_t* wj = wr + 4 * j;
    int32_t tail[NR];
    if (j == full) {
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) tail[r] = Load4(wj + r * K, K - 4 * j);
    }
    __m512i xv[MB];
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) xv[b] = _mm512_loadu_si512(xp + b * stride + j * 64);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      int32_t v;
      std::memcpy(&v, j == full ? reinterpret_cast<const int8_t*>(tail + r) : wj + r * K, 4);
      const __m512i wb = _mm512_set1_epi32(v);
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], xv[b], wb);
    }
  }
  float tile[NR][MB * 16];
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
    const __m512 xs = _mm512_loadu_ps(x.scale.data() + (g + b) * 16);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      const __m512i exact = _mm512_sub_epi32(acc[r][b], _mm512_set1_epi32(128 * wsum[r]));
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(xs, _mm512_set1_ps(out.wscale[n + r])));
      if (out.bias) v = _mm512_add_ps(v, _mm512_set1_ps(out.bias[n + r]));
      _mm512_storeu_ps(tile[r] + b * 16, v);
    }
  }
  const int64_t m0 = g * 16;
  StoreTransposed<NR>(tile[0], MB * 16, std::min<int64_t>(MB * 16, x.M - m0), out.y + m0 * out.N + n, out.N);
}

constexpr int kGemmRows = 8;    // weight rows per microkernel call
constexpr int kGemmGroups = 3;  // groups of 16 x rows per call: 8 x 3 = 24 accumulators
// x rows in blocks of about this many packed bytes, which stay in L2 while a chunk's weight
// rows pass over them.
constexpr int64_t kGemmXBlockBytes = 512 << 10;

// GemmTile's MB for the last groups of a block.
template <int NR>
R1_TARGET_VNNI void GemmTiles(const QuantizedX& x, const int8_t* w, const int32_t* wsum, const Output& out,
                              int64_t n, int64_t g0, int64_t g1) {
  int64_t g = g0;
  for (; g + kGemmGroups <= g1; g += kGemmGroups) GemmTile<NR, kGemmGroups>(x, w, wsum, out, n, g);
  switch (g1 - g) {
    case 3: GemmTile<NR, 3>(x, w, wsum, out, n, g); break;
    case 2: GemmTile<NR, 2>(x, w, wsum, out, n, g); break;
    case 1: GemmTile<NR, 1>(x, w, wsum, out, n, g); break;
  }
}

// Rows [n0, n1) of W (at most kGemmChunk) against all of x, with the VNNI kernels.
constexpr int64_t kGemmChunk = 8 * kGemmRows;
R1_TARGET_VNNI void VnniRows(const QuantizedX& x, const int8_t* w, const Output& out, int64_t n0, int64_t n1) {
  const int64_t M = x.M, K = x.K, ld = x.ld;
  if (M < kGemmMinRows) {
    int64_t n = n0;
    if (M == 1) {
      for (; n < n1; ++n) out.Store(x, 0, n, VnniDotRow(w + n * K, K, x.q.data(), x.sum[0]));
      return;
    }
    for (; n + 4 <= n1; n += 4) {
      int64_t m = 0;
      for (; m + 2 <= M; m += 2) {
        int32_t acc[4][2];
        VnniDotTile<4, 2>(w + n * K, K, x.q.data() + m * ld, ld, x.sum.data() + m, acc);
        for (int r = 0; r < 4; ++r)
          for (int j = 0; j < 2; ++j) out.Store(x, m + j, n + r, acc[r][j]);
      }
      for (; m < M; ++m) {
        int32_t acc[4][1];
        VnniDotTile<4, 1>(w + n * K, K, x.q.data() + m * ld, ld, x.sum.data() + m, acc);
        for (int r = 0; r < 4; ++r) out.Store(x, m, n + r, acc[r][0]);
      }
    }
    for (; n < n1; ++n)
      for (int64_t m = 0; m < M; ++m) {
        int32_t acc[1][1];
        VnniDotTile<1, 1>(w + n * K, K, x.q.data() + m * ld, ld, x.sum.data() + m, acc);
        out.Store(x, m, n, acc[0][0]);
      }
    return;
  }
  int32_t wsum[kGemmChunk];
  for (int64_t n = n0; n < n1; ++n) wsum[n - n0] = RowSum(w + n * K, K);
  const int64_t groups = (M + 15) / 16;
  const int64_t gblock = std::max<int64_t>(kGemmGroups, kGemmXBlockBytes / (x.k4 * 64) / kGemmGroups * kGemmGroups);
  for (int64_t gb = 0; gb < groups; gb += gblock) {
    const int64_t ge = std::min(groups, gb + gblock);
    int64_t n = n0;
    for (; n + kGemmRows <= n1; n += kGemmRows) GemmTiles<kGemmRows>(x, w, wsum + (n - n0), out, n, gb, ge);
    for (; n < n1; ++n) GemmTiles<1>(x, w, wsum + (n - n0), out, n, gb, ge);
  }
}

bool CpuHasVnni() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return ok;
}

#else

void VnniRows(const QuantizedX&, const int8_t*, const Output&, int64_t, int64_t) {}
bool CpuHasVnni() { return false; }

#endif  // R1_HAVE_AVX2_INT8_KERNEL

}  // namespace

// With AVX2 the division and the rounding vectorize (vroundps rounds half to even, as
// nearbyint does); without it a decode step spent milliseconds in nearbyint calls.
R1_TARGET_AVX2 float QuantizeInt8Row(const float* src, int64_t K, int8_t* q) {
  float amax = 0.f;
  int64_t k = 0;
#ifdef R1_HAVE_AVX2_INT8_KERNEL
  // amax in eight lanes (std::max's NaN rule keeps the compiler from vectorizing the loop; here
  // too a NaN is skipped: vmaxps returns its second operand when either is NaN).
  if (Int8KernelAvailable()) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    for (; k + 8 <= K; k += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(src + k), magnitude), m);
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    for (float v : lanes) amax = std::max(amax, v);
  }
#endif
  for (; k < K; ++k) amax = std::max(amax, std::fabs(src[k]));
  const float scale = RowScale(amax);
  for (int64_t k = 0; k < K; ++k) q[k] = QuantizeValue(src[k], scale);
  return scale;
}

bool Int8KernelAvailable() {
#ifdef R1_HAVE_AVX2_INT8_KERNEL
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
#else
  return false;
#endif
}

bool Int8IsaAvailable(Int8Isa isa) {
  return isa == Int8Isa::kAvx512Vnni ? CpuHasVnni() : Int8KernelAvailable();
}

Int8Isa BestInt8Isa() { return CpuHasVnni() ? Int8Isa::kAvx512Vnni : Int8Isa::kAvx2; }

const char* Int8IsaName(Int8Isa isa) { return isa == Int8Isa::kAvx512Vnni ? "AVX512-VNNI" : "AVX2"; }

Int8Rows QuantizeInt8Rows(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.device().is_cpu() && at::isFloatingType(w.scalar_type()),
              "QuantizeInt8Rows: a 2-D floating CPU tensor, got ", w.sizes(), " ", w.scalar_type());
  const int64_t N = w.size(0), K = w.size(1);
  Int8Rows out{at::empty({N, K}, at::kChar), at::empty({N}, at::kFloat)};
  auto* q = out.q.data_ptr<int8_t>();
  auto* scale = out.scale.data_ptr<float>();
  // Row chunks of about a megabyte of float32 at a time: the whole tensor is never float32.
  const int64_t rows = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(1, K));
  ParallelChunks(N, rows, [&](int64_t n0, int64_t n1) {
    at::Tensor part = w.narrow(0, n0, n1 - n0).to(at::kFloat).contiguous();
    const float* src = part.data_ptr<float>();
    for (int64_t n = n0; n < n1; ++n)
      scale[n] = QuantizeRow(src + (n - n0) * K, K, q + n * K, nullptr);
  });
  return out;
}

at::Tensor LinearInt8(const at::Tensor& x, const at::Tensor& wq, const at::Tensor& wscale,
                      const at::Tensor& b, Int8Isa isa) {
  TORCH_CHECK(x.dim() == 2 && wq.dim() == 2 && x.size(1) == wq.size(1) &&
                  wq.scalar_type() == at::kChar && wq.is_contiguous() &&
                  wscale.scalar_type() == at::kFloat && wscale.numel() == wq.size(0) &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "LinearInt8: x ", x.sizes(), " ", x.scalar_type(), ", weights ", wq.sizes(), " ",
              wq.scalar_type(), ", scales ", wscale.sizes(), " ", wscale.scalar_type());
  TORCH_CHECK(isa != Int8Isa::kAvx512Vnni || CpuHasVnni(),
              "LinearInt8: the AVX512-VNNI kernel needs AVX512F, BW, VL and VNNI, which this CPU does not have");
  static std::once_flag logged;
  std::call_once(logged, [&] {
    R1_LOG(INFO) << "int8 linear layers: the " << Int8IsaName(isa) << " kernel (best on this CPU: "
                 << Int8IsaName(BestInt8Isa()) << ")";
  });
  const int64_t M = x.size(0), N = wq.size(0), K = wq.size(1);
  const QuantizedX xq = QuantizeActivations(x, isa);
  const std::vector<float> bias = FloatRows(b.defined() ? b.view({1, -1}) : b);
  at::Tensor ws = wscale.contiguous();
  const float* bp = bias.empty() ? nullptr : bias.data();
  const float* sp = ws.data_ptr<float>();
  const int8_t* wp = wq.data_ptr<int8_t>();
  LinearOut y(M, N, x.scalar_type());
  const Output out{sp, bp, y.data(), N};
  if (isa == Int8Isa::kAvx512Vnni && M >= kGemmMinRows) {
    ParallelChunks(N, kGemmChunk, [&](int64_t n0, int64_t n1) { VnniRows(xq, wp, out, n0, n1); });
  } else {
    // Chunks of about 64 KiB of weight rows (VNNI: 256 KiB), taken by whichever thread runs next.
    const int64_t bytes = isa == Int8Isa::kAvx512Vnni ? 256 << 10 : 64 << 10;
    const int64_t chunk = std::max<int64_t>(4, bytes / K / 4 * 4);
    ParallelChunks(N, chunk, [&](int64_t n0, int64_t n1) {
      if (isa == Int8Isa::kAvx512Vnni) VnniRows(xq, wp, out, n0, n1);
      else Avx2Rows(xq, wp, out, n0, n1);
    });
  }
  return y.Finish();
}

std::vector<float> FloatRows(const at::Tensor& x) {
  if (!x.defined()) return {};
  TORCH_CHECK(x.dim() == 2, "FloatRows: ", x.sizes());
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) {  // float16, float64: rare
    at::Tensor f = x.to(at::kFloat).contiguous();
    return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  }
  const int64_t M = x.size(0), K = x.size(1), s0 = x.stride(0), s1 = x.stride(1);
  std::vector<float> out(static_cast<size_t>(M * K));
  for (int64_t m = 0; m < M; ++m) {
    float* o = out.data() + m * K;
    if (x.scalar_type() == at::kFloat) {
      const float* p = x.data_ptr<float>() + m * s0;
      for (int64_t k = 0; k < K; ++k) o[k] = p[k * s1];
    } else {
      const c10::BFloat16* p = x.data_ptr<c10::BFloat16>() + m * s0;
      for (int64_t k = 0; k < K; ++k) o[k] = static_cast<float>(p[k * s1]);
    }
  }
  return out;
}

LinearOut::LinearOut(int64_t M, int64_t N, at::ScalarType dtype) : M_(M), N_(N), dtype_(dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "LinearOut: ", dtype);
  if (dtype == at::kFloat) y_ = at::empty({M, N}, at::kFloat);
  else scratch_.resize(static_cast<size_t>(M * N));
}

at::Tensor LinearOut::Finish() {
  if (y_.defined()) return y_;
  at::Tensor out = at::empty({M_, N_}, dtype_);
  c10::BFloat16* o = out.data_ptr<c10::BFloat16>();
  for (size_t i = 0; i < scratch_.size(); ++i) o[i] = c10::BFloat16(scratch_[i]);  // nearest even
  return out;
}

}  // namespace r1::model
