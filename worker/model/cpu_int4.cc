#include "worker/model/cpu_int4.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "worker/model/cpu_avx2.h"
#include "worker/model/cpu_int8.h"
#include "worker/model/cpu_parallel.h"

#ifdef R1_HAVE_AVX2
#define R1_HAVE_AVX2_INT4_KERNEL 1
// GCC 12 warns about an uninitialised variable inside its own avx512fintrin.h when the VNNI
// GEMM inlines it (a false positive, as in cpu_gemm.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace r1::model {
namespace {

int64_t PaddedK(int64_t k) { return (k + 63) / 64 * 64; }
int64_t NumGroups(int64_t k, int64_t group) { return Int4NumGroups(k, group); }

// Where activation column k sits in the quantized row: the kernel pairs the low nibbles of a
// 64-column chunk's 32 bytes (columns 0-15 of its two blocks) with the chunk's first 32
// activation bytes, and the high nibbles (columns 16-31 of each block) with the next 32.
int64_t PermutedColumn(int64_t k) {
  const int64_t chunk = k & ~int64_t{63}, j = k & 63;
  const int64_t block = j >> 5, in = j & 31;
  return chunk + (in >> 4) * 32 + block * 16 + (in & 15);
}

// Where the VNNI decode kernel wants column k: per 128 columns (two of the chunks above, one
// 64-byte load of weights), both chunks' low-nibble halves, then both high-nibble halves.
int64_t VnniColumn(int64_t k) {
  const int64_t t = PermutedColumn(k) & 63, second = (k >> 6) & 1;
  return (k & ~int64_t{127}) + (t & 32) * 2 + second * 32 + (t & 31);
}

// The activations of one call: int8 per row (columns permuted as above, or as VnniColumn
// says; zero-padded to the row stride ld), the row's scale, and the sum of its int8 values over
// each weight group (for the zero points).
struct Activations {
  int64_t M = 0, K = 0, Kp = 0, ld = 0, groups = 0;
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<float> sum;  // integers, as float32 (exact below 2^24) for the vector epilogue
};

Activations QuantizeActivations(const at::Tensor& x, int64_t group, bool vnni) {
  const std::vector<float> xf = FloatRows(x);
  Activations a;
  a.M = x.size(0), a.K = x.size(1), a.Kp = PaddedK(a.K), a.groups = NumGroups(a.K, group);
  a.ld = vnni ? (a.K + 127) / 128 * 128 : a.Kp;
  a.q.assign(static_cast<size_t>(a.M * a.ld), 0);
  a.scale.resize(static_cast<size_t>(a.M));
  a.sum.assign(static_cast<size_t>(a.M * a.groups), 0);
  const float* src = xf.data();
  ParallelChunks(a.M, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, a.K)), [&](int64_t m0, int64_t m1) {
    std::vector<int8_t> row(static_cast<size_t>(a.Kp), 0);  // zero past K
    for (int64_t m = m0; m < m1; ++m) {
      a.scale[m] = QuantizeInt8Row(src + m * a.K, a.K, row.data());
      int8_t* dst = a.q.data() + m * a.ld;
      for (int64_t k = 0; k < a.Kp; k += 16)  // runs of 16 columns stay together
        std::memcpy(dst + (vnni ? VnniColumn(k) : PermutedColumn(k)), row.data() + k, 16);
      float* sum = a.sum.data() + m * a.groups;
      for (int64_t g = 0; g * group < a.K; ++g) {
        int32_t s = 0;
        for (int64_t k = g * group; k < std::min(a.K, (g + 1) * group); ++k) s += row[k];
        sum[g] = static_cast<float>(s);
      }
    }
  });
  return a;
}

#ifdef R1_HAVE_AVX2_INT4_KERNEL

// The int16 pair sums of one 64-column chunk c of a weight row against MR activation rows
// (stride Kp): one 32-byte load, the nibbles masked out in registers, unsigned nibble x signed
// byte products added in pairs (vpmaddubsw; each lane at most 2 * 2 * 15 * 127 = 7620). Lanes
// 0-7 hold the chunk's first 32-column block, lanes 8-15 its second.
template <int MR>
R1_TARGET_AVX2_FMA inline void ChunkSums(const uint8_t* w, const int8_t* x, int64_t Kp, int64_t c, __m256i p[MR]) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
  const __m256i lo = _mm256_and_si256(v, nibble);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
  for (int m = 0; m < MR; ++m) {
    const int8_t* xm = x + m * Kp + 64 * c;
    p[m] = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm))),
                            _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 32))));
  }
}

constexpr int64_t kPrefetchBytes = 1024;

// For one weight row (packed `w`, its group scales) and MR activation rows:
//   out[m] = Σ over the row's groups of scale * Σ_{k in group} q[k] * xq[m, k]
// (the zero points come after). Each group's sums are widened to int32 (vpmaddwd) and turned
// to float once: with group 128 the two chunks of a group are added in int16 first (at most
// 15,240); with group 32 the two halves of a chunk take their own scales.
template <int MR, int G>
R1_TARGET_AVX2_FMA inline void DotRow(const uint8_t* w, const float* scale, int64_t chunks, const int8_t* x,
                                      int64_t Kp, float out[MR]) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MR];
  for (int m = 0; m < MR; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t c = 0; c < chunks;) {
    // The weights kPrefetchBytes ahead (the next rows' too: a thread's rows are contiguous):
    // the hardware prefetcher alone leaves decode waiting on memory.
    _mm_prefetch(reinterpret_cast<const char*>(w + 32 * c) + kPrefetchBytes, _MM_HINT_T0);
    __m256i p[MR];
    ChunkSums<MR>(w, x, Kp, c, p);
    __m256 s;
    if constexpr (G == 32) {
      s = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(scale + 2 * c)),
                               _mm_broadcast_ss(scale + 2 * c + 1), 1);
      c += 1;
    } else {
      s = _mm256_broadcast_ss(scale + 64 * c / G);
      if (G == 128 && c + 1 < chunks) {
        __m256i p2[MR];
        ChunkSums<MR>(w, x, Kp, c + 1, p2);
        for (int m = 0; m < MR; ++m) p[m] = _mm256_add_epi16(p[m], p2[m]);
        c += 2;
      } else {
        c += 1;
      }
    }
    for (int m = 0; m < MR; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p[m], ones)), s, acc[m]);
  }
  for (int m = 0; m < MR; ++m) out[m] = SumLanes(acc[m]);
}

// Step d of the VNNI kernels, x in VnniColumn's order: 64 bytes of weights v (128 columns),
// the nibbles masked out and multiplied by each of MR activation rows' bytes (stride ld) with
// two vpdpbusd (four products a lane), the int32 lanes scaled by their groups' scales into
// acc[m]. Lanes 4i..4i+3 hold the step's 32-column block i, so the scale vector repeats each
// group's scale over its lanes.
template <int MR, int G>
__attribute__((always_inline)) R1_TARGET_AVX512_VNNI inline void VnniStep(__m512i v, int64_t d, const float* scale,
                                                                       int64_t groups, const int8_t* x, int64_t ld,
                                                                       __m512* acc) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i lo = _mm512_and_si512(v, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
  __m512 s;
  if constexpr (G == 128) {
    s = _mm512_set1_ps(scale[d]);
  } else {
    const __m512i lane_group = _mm512_srli_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), G == 32 ? 2 : 3);
    const int64_t first = d * (128 / G), count = std::min<int64_t>(128 / G, groups - first);
    const __m128 four = _mm_maskz_loadu_ps(static_cast<__mmask8>((1 << count) - 1), scale + first);
    s = _mm512_permutexvar_ps(lane_group, _mm512_castps128_ps512(four));
  }
  for (int m = 0; m < MR; ++m) {
    const int8_t* xm = x + m * ld + 128 * d;
    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xm));
    p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512(xm + 64));
    acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[m]);
  }
}

// DotRow with AVX512-VNNI (2 to 15 rows of x; batch 1 runs VnniDecodeRow below), one VnniStep
// at a time. A row of an odd number of chunks ends in a 32-byte load.
template <int MR, int G>
R1_TARGET_AVX512_VNNI inline void VnniDotRow(const uint8_t* w, const float* scale, int64_t groups, int64_t chunks,
                                             const int8_t* x, int64_t ld, float out[MR]) {
  __m512 acc[MR];
  for (int m = 0; m < MR; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t d = 0; 2 * d < chunks; ++d) {
    PrefetchStream(w + 64 * d);
    const __m512i v = 2 * d + 1 < chunks
                          ? _mm512_loadu_si512(w + 64 * d)
                          : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * d)));
    VnniStep<MR, G>(v, d, scale, groups, x, ld, acc);
  }
  for (int m = 0; m < MR; ++m) out[m] = _mm512_reduce_add_ps(acc[m]);
}

// Batch 1 (decode): one weight row against the one activation row, to its output before x's
// scale: Σ_g scale[g] * (Σ_{k in g} q[k] xq[k] - zero[g] * xsum[g]). Four steps (256 bytes)
// an iteration into four accumulators, each line prefetched (PrefetchStream); then the zero
// points, sixteen groups at a time, off the same vector before its one horizontal sum. (This
// is ZeroCorrection's sum in AVX512: calling that AVX2 function instead measured 2-6% slower
// on the 1.5B's down and gate/up, cpu_linear_bench --m 1 --kinds int4, 2026-12-03.)
constexpr int kDecodeSteps = 4;

template <int G>
R1_TARGET_AVX512_VNNI inline float VnniDecodeRow(const uint8_t* w, const float* scale, const uint8_t* zero,
                                                int64_t groups, int64_t chunks, const int8_t* x, const float* xsum) {
  __m512 acc[kDecodeSteps];
  for (int u = 0; u < kDecodeSteps; ++u) acc[u] = _mm512_setzero_ps();
  const int64_t steps = chunks / 2;  // whole 64-byte steps
  int64_t d = 0;
  for (; d + kDecodeSteps <= steps; d += kDecodeSteps) {
    for (int u = 0; u < kDecodeSteps; ++u) PrefetchStream(w + 64 * (d + u));
    for (int u = 0; u < kDecodeSteps; ++u)
      VnniStep<1, G>(_mm512_loadu_si512(w + 64 * (d + u)), d + u, scale, groups, x, 0, &acc[u]);
  }
  for (; d < steps; ++d) VnniStep<1, G>(_mm512_loadu_si512(w + 64 * d), d, scale, groups, x, 0, acc);
  if (chunks & 1)  // an odd number of 64-column chunks: the last 32 bytes
    VnniStep<1, G>(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * d))), d, scale,
                   groups, x, 0, acc);
  __m512 corr = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 m = groups - g >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (groups - g)) - 1);
    const __m512 z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zero + g)));
    corr = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, scale + g), z), _mm512_maskz_loadu_ps(m, xsum + g), corr);
  }
  const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
  return _mm512_reduce_add_ps(_mm512_sub_ps(sum, corr));
}

// What a row's zero points take off its sums: Σ_g (scale[g] * zero[g]) * xsum[g], in one pass
// (the same products and order as a Dot over the scaled zeros).
R1_TARGET_AVX2_FMA inline float ZeroCorrection(const float* scale, const uint8_t* zero, const float* xsum,
                                               int64_t groups) {
  __m256 acc = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= groups; g += 8) {
    const __m256 z = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zero + g))));
    acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(scale + g), z), _mm256_loadu_ps(xsum + g), acc);
  }
  float s = SumLanes(acc);
  for (; g < groups; ++g) s += scale[g] * static_cast<float>(zero[g]) * xsum[g];
  return s;
}

#else

// The same sums, one column at a time (unpacking as UnpackInt4 does).
template <int MR, int G>
void DotRow(const uint8_t* w, const float* scale, int64_t chunks, const int8_t* x, int64_t Kp, float out[MR]) {
  for (int m = 0; m < MR; ++m) out[m] = 0.f;
  for (int64_t k = 0; k < 64 * chunks; ++k) {
    const uint8_t byte = w[(k >> 5) * 16 + (k & 15)];
    const int q = (k & 16) ? byte >> 4 : byte & 15;
    for (int m = 0; m < MR; ++m)
      out[m] += scale[k / G] * static_cast<float>(q * x[m * Kp + PermutedColumn(k)]);
  }
}

inline float ZeroCorrection(const float* scale, const uint8_t* zero, const float* xsum, int64_t groups) {
  float s = 0.f;
  for (int64_t g = 0; g < groups; ++g) s += scale[g] * static_cast<float>(zero[g]) * xsum[g];
  return s;
}

#endif  // R1_HAVE_AVX2_INT4_KERNEL

struct Weights {
  const uint8_t* q;
  const float* scale;
  const uint8_t* zero;
  int64_t row_bytes, groups;
};

// One weight row against MR activation rows with the AVX2 kernel or (Vnni) the AVX512-VNNI one.
template <int MR, int G, bool Vnni>
R1_TARGET_AVX2_FMA void Dot(const Activations& x, const uint8_t* wq, const float* scale, int64_t groups,
                            const int8_t* xq, float out[MR]) {
#ifdef R1_HAVE_AVX2_INT4_KERNEL
  if constexpr (Vnni) return VnniDotRow<MR, G>(wq, scale, groups, x.Kp / 64, xq, x.ld, out);
#endif
  DotRow<MR, G>(wq, scale, x.Kp / 64, xq, x.ld, out);
}

#ifdef R1_HAVE_AVX2_INT4_KERNEL
// y[0, n] for rows [n0, n1) of W with one row of x (decode), on the VNNI kernel.
template <int G>
R1_TARGET_AVX512_VNNI void VnniDecodeRows(const Activations& x, const Weights& w, const float* bias, float* y,
                                          int64_t n0, int64_t n1) {
  const int64_t chunks = x.Kp / 64;
  for (int64_t n = n0; n < n1; ++n) {
    float v = x.scale[0] * VnniDecodeRow<G>(w.q + n * w.row_bytes, w.scale + n * w.groups, w.zero + n * w.groups,
                                            w.groups, chunks, x.q.data(), x.sum.data());
    if (bias) v += bias[n];
    y[n] = v;
  }
}
#endif

// y[m, n] for rows [n0, n1) of W: activation rows four at a time against each weight row (the
// row is unpacked once for the four), then the zero points, the scales and the bias. One row
// of x on the VNNI kernel: VnniDecodeRows.
template <int G, bool Vnni>
R1_TARGET_AVX2_FMA void Rows(const Activations& x, const Weights& w, const float* bias, float* y,
                             int64_t N, int64_t n0, int64_t n1) {
#ifdef R1_HAVE_AVX2_INT4_KERNEL
  if constexpr (Vnni) {
    if (x.M == 1) return VnniDecodeRows<G>(x, w, bias, y, n0, n1);
  }
#endif
  for (int64_t mb = 0; mb < x.M; mb += 4) {
    const int64_t mr = std::min<int64_t>(4, x.M - mb);
    const int8_t* xq = x.q.data() + mb * x.ld;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* wq = w.q + n * w.row_bytes;
      const float* scale = w.scale + n * w.groups;
      float dot[4];
      switch (mr) {
        case 4: Dot<4, G, Vnni>(x, wq, scale, w.groups, xq, dot); break;
        case 3: Dot<3, G, Vnni>(x, wq, scale, w.groups, xq, dot); break;
        case 2: Dot<2, G, Vnni>(x, wq, scale, w.groups, xq, dot); break;
        default: Dot<1, G, Vnni>(x, wq, scale, w.groups, xq, dot); break;
      }
      // The zero points (Σ_g scale * zero * Σ_{k in g} xq off the sums), the scales, the bias.
      const uint8_t* zero = w.zero + n * w.groups;
      for (int64_t j = 0; j < mr; ++j) {
        const int64_t m = mb + j;
        const float correction = ZeroCorrection(scale, zero, x.sum.data() + m * x.groups, w.groups);
        float v = x.scale[m] * (dot[j] - correction);
        if (bias) v += bias[n];
        y[m * N + n] = v;
      }
    }
  }
}

#ifdef R1_HAVE_AVX2_INT4_KERNEL

// ---- AVX512-VNNI GEMM, for 16 rows of x or more (prefill) ----
// The weights are unpacked once per call into bytes (0-15) in column order, then multiplied as
// the unsigned operand of vpdpbusd by x's signed bytes: x packed 16 rows to a vector, 4 columns
// to an int32 lane, against NR weight rows broadcast 4 bytes at a time. Each group's int32
// sums take the zero point off exactly (zero * the rows' sums over the group), then are scaled
// into float32 accumulators.

constexpr int64_t kGemmMinRows = 16;

// x quantized per row as QuantizeActivations does, packed for the GEMM.
struct GemmActivations {
  int64_t M = 0, K = 0, Kp = 0, groups = 0;
  std::vector<int8_t> packed;  // the 64 bytes at (g * Kp / 4 + j) * 64: columns 4j..4j+3 of rows 16g..16g+15
  std::vector<int32_t> sum;    // at (g * groups + c) * 16 + i: Σ over weight group c of row 16g + i
  std::vector<float> scale;    // [M], ones to a whole group of 16
};

GemmActivations QuantizeForGemm(const at::Tensor& x, int64_t group) {
  const std::vector<float> xf = FloatRows(x);
  GemmActivations a;
  a.M = x.size(0), a.K = x.size(1), a.Kp = PaddedK(a.K), a.groups = NumGroups(a.K, group);
  const int64_t row_groups = (a.M + 15) / 16;
  a.packed.assign(static_cast<size_t>(row_groups * 16 * a.Kp), 0);
  a.sum.assign(static_cast<size_t>(row_groups * 16 * a.groups), 0);
  a.scale.assign(static_cast<size_t>(row_groups * 16), 1.f);
  const float* src = xf.data();
  ParallelChunks(a.M, 16, [&](int64_t m0, int64_t m1) {
    std::vector<int8_t> row(static_cast<size_t>(a.Kp), 0);  // zero past K
    for (int64_t m = m0; m < m1; ++m) {
      a.scale[m] = QuantizeInt8Row(src + m * a.K, a.K, row.data());
      int8_t* dst = a.packed.data() + (m / 16) * 16 * a.Kp + (m % 16) * 4;
      for (int64_t j = 0; j < a.Kp / 4; ++j) std::memcpy(dst + j * 64, row.data() + 4 * j, 4);
      int32_t* sum = a.sum.data() + (m / 16) * 16 * a.groups + m % 16;
      for (int64_t c = 0; c * group < a.K; ++c) {
        int32_t s = 0;
        for (int64_t k = c * group; k < std::min(a.K, (c + 1) * group); ++k) s += row[k];
        sum[c * 16] = s;
      }
    }
  });
  return a;
}

// Rows [n0, n1) of the packed weights as one byte a weight, in column order (row stride Kp):
// each 32-byte load holds two 32-column blocks, low nibbles columns 0-15, high ones 16-31.
R1_TARGET_AVX2_FMA void UnpackRows(const Weights& w, int64_t n0, int64_t n1, int64_t Kp, uint8_t* out) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* src = w.q + n * w.row_bytes;
    uint8_t* dst = out + (n - n0) * Kp;
    for (int64_t c = 0; c < Kp / 64; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 32 * c));
      const __m256i lo = _mm256_and_si256(v, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * c), _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * c + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
  }
}

// The microkernel: NR unpacked weight rows (`wu`, from row n) against MB groups of 16 rows of
// x (from group g), group by group along K, then x's scales and the bias, into y through a
// small transposing tile. Every loop over NR and MB is unrolled: the accumulators stay in
// registers (NR x MB int32 and as many float32).
template <int NR, int MB, int G>
R1_TARGET_AVX512_VNNI void GemmTile(const GemmActivations& x, const uint8_t* wu, const Weights& w,
                                    const float* bias, float* y, int64_t N, int64_t n, int64_t g) {
  const int64_t Kp = x.Kp, stride = 16 * Kp;
  const int8_t* xp = x.packed.data() + g * stride;
  __m512 accf[NR][MB];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < MB; ++b) accf[r][b] = _mm512_setzero_ps();
  for (int64_t c = 0; c < x.groups; ++c) {
    __m512i acc[NR][MB];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) acc[r][b] = _mm512_setzero_si512();
    const int64_t j1 = std::min<int64_t>(Kp / 4, (c + 1) * G / 4);
    for (int64_t j = c * G / 4; j < j1; ++j) {
      int32_t wv[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) std::memcpy(&wv[r], wu + r * Kp + 4 * j, 4);
      VnniGemmStep<NR, MB, false>(acc, xp + j * 64, stride, wv);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const int64_t at = (n + r) * w.groups + c;
      const __m512 s = _mm512_set1_ps(w.scale[at]);
      const __m512i z = _mm512_set1_epi32(w.zero[at]);
#pragma GCC unroll 4
      for (int b = 0; b < MB; ++b) {
        const __m512i xs = _mm512_loadu_si512(x.sum.data() + ((g + b) * x.groups + c) * 16);
        const __m512i exact = _mm512_sub_epi32(acc[r][b], _mm512_mullo_epi32(z, xs));
        accf[r][b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), s, accf[r][b]);
      }
    }
  }
  float tile[NR][MB * 16];
#pragma GCC unroll 4
  for (int b = 0; b < MB; ++b) {
    const __m512 xs = _mm512_loadu_ps(x.scale.data() + (g + b) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      __m512 v = _mm512_mul_ps(accf[r][b], xs);
      if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[n + r]));
      _mm512_storeu_ps(tile[r] + b * 16, v);
    }
  }
  const int64_t m0 = g * 16;
  StoreTransposed<NR>(tile[0], MB * 16, std::min<int64_t>(MB * 16, x.M - m0), y + m0 * N + n, N);
}

constexpr int kGemmRows = 4;    // weight rows per microkernel call
constexpr int kGemmGroups = 3;  // groups of 16 x rows: 12 int32 and 12 float32 accumulators
constexpr int64_t kGemmChunk = 32;  // weight rows a thread takes at a time (unpacked together)
constexpr int64_t kGemmXBlockBytes = 384 << 10;  // x rows in blocks that stay in L2

template <int NR, int G>
R1_TARGET_AVX512_VNNI void GemmTiles(const GemmActivations& x, const uint8_t* wu, const Weights& w,
                                     const float* bias, float* y, int64_t N, int64_t n, int64_t g0, int64_t g1) {
  int64_t g = g0;
  for (; g + kGemmGroups <= g1; g += kGemmGroups) GemmTile<NR, kGemmGroups, G>(x, wu, w, bias, y, N, n, g);
  if (g1 - g == 2) GemmTile<NR, 2, G>(x, wu, w, bias, y, N, n, g);
  if (g1 - g == 1) GemmTile<NR, 1, G>(x, wu, w, bias, y, N, n, g);
}

// y for rows [n0, n1) of W (at most kGemmChunk): unpack them, then x in L2-sized blocks.
template <int G>
void GemmRows(const GemmActivations& x, const Weights& w, const float* bias, float* y, int64_t N,
              int64_t n0, int64_t n1) {
  std::vector<uint8_t> wu(static_cast<size_t>((n1 - n0) * x.Kp));
  UnpackRows(w, n0, n1, x.Kp, wu.data());
  const int64_t row_groups = (x.M + 15) / 16;
  const int64_t block = std::max<int64_t>(kGemmGroups, kGemmXBlockBytes / (16 * x.Kp) / kGemmGroups * kGemmGroups);
  for (int64_t gb = 0; gb < row_groups; gb += block) {
    const int64_t ge = std::min(row_groups, gb + block);
    int64_t n = n0;
    for (; n + kGemmRows <= n1; n += kGemmRows)
      GemmTiles<kGemmRows, G>(x, wu.data() + (n - n0) * x.Kp, w, bias, y, N, n, gb, ge);
    for (; n < n1; ++n) GemmTiles<1, G>(x, wu.data() + (n - n0) * x.Kp, w, bias, y, N, n, gb, ge);
  }
}

#endif  // R1_HAVE_AVX2_INT4_KERNEL

}  // namespace

bool Int4KernelAvailable() {
#ifdef R1_HAVE_AVX2_INT4_KERNEL
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

int64_t Int4NumGroups(int64_t k, int64_t group) { return (PaddedK(k) + group - 1) / group; }

bool Int4GroupSizeSupported(int64_t group) { return group == 32 || group == 64 || group == 128; }

at::Tensor PackInt4(const at::Tensor& q) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kByte, "PackInt4: a 2-D uint8 tensor, got ",
              q.sizes(), " ", q.scalar_type());
  const int64_t N = q.size(0), K = q.size(1), Kp = PaddedK(K);
  at::Tensor p = at::constant_pad_nd(q, {0, Kp - K}).view({N, Kp / 32, 2, 16});
  return p.select(2, 0).bitwise_or(p.select(2, 1).mul(16)).reshape({N, Kp / 2}).contiguous();
}

at::Tensor UnpackInt4(const at::Tensor& packed, int64_t k) {
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == at::kByte && packed.size(1) == PaddedK(k) / 2,
              "UnpackInt4: uint8 [N, ", PaddedK(k) / 2, "] for K ", k, ", got ", packed.sizes(), " ",
              packed.scalar_type());
  const int64_t N = packed.size(0);
  at::Tensor v = packed.view({N, -1, 16});
  return at::stack({v.bitwise_and(15), v.div(16, "floor")}, 2).reshape({N, -1}).narrow(1, 0, k).contiguous();
}

Int4Groups QuantizeInt4Groups(const at::Tensor& w, int64_t group) {
  TORCH_CHECK(w.dim() == 2 && w.device().is_cpu() && at::isFloatingType(w.scalar_type()),
              "QuantizeInt4Groups: a 2-D floating CPU tensor, got ", w.sizes(), " ", w.scalar_type());
  TORCH_CHECK(Int4GroupSizeSupported(group), "QuantizeInt4Groups: group ", group, " is not 32, 64 or 128");
  const int64_t N = w.size(0), K = w.size(1), Kp = PaddedK(K), G = NumGroups(K, group);
  Int4Groups out{at::empty({N, Kp / 2}, at::kByte), at::zeros({N, G}, at::kFloat),
                 at::zeros({N, G}, at::kByte), K, group};
  uint8_t* packed = out.q.data_ptr<uint8_t>();
  float* scales = out.scale.data_ptr<float>();
  uint8_t* zeros = out.zero.data_ptr<uint8_t>();
  const int64_t rows = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(1, K));
  ParallelChunks(N, rows, [&](int64_t n0, int64_t n1) {
    at::Tensor part = w.narrow(0, n0, n1 - n0).to(at::kFloat).contiguous();
    std::vector<uint8_t> q(static_cast<size_t>(Kp));
    for (int64_t n = n0; n < n1; ++n) {
      const float* src = part.data_ptr<float>() + (n - n0) * K;
      std::fill(q.begin(), q.end(), 0);
      for (int64_t g = 0; g * group < K; ++g) {
        const int64_t k0 = g * group, k1 = std::min(K, k0 + group);
        float lo = 0.f, hi = 0.f;
        for (int64_t k = k0; k < k1; ++k) lo = std::min(lo, src[k]), hi = std::max(hi, src[k]);
        const float scale = hi > lo ? (hi - lo) / 15.f : 1.f;
        const float zero = std::clamp(std::nearbyint(-lo / scale), 0.f, 15.f);
        for (int64_t k = k0; k < k1; ++k)
          q[k] = static_cast<uint8_t>(std::clamp(std::nearbyint(src[k] / scale) + zero, 0.f, 15.f));
        scales[n * G + g] = scale;
        zeros[n * G + g] = static_cast<uint8_t>(zero);
      }
      uint8_t* dst = packed + n * (Kp / 2);
      for (int64_t b = 0; b < Kp / 32; ++b)
        for (int64_t j = 0; j < 16; ++j) dst[b * 16 + j] = q[32 * b + j] | q[32 * b + 16 + j] << 4;
    }
  });
  return out;
}

at::Tensor LinearInt4(const at::Tensor& x, const Int4Groups& w, const at::Tensor& b, Int8Isa isa) {
  const int64_t N = w.q.defined() ? w.q.size(0) : 0, K = w.k, G = NumGroups(K, w.group);
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K && Int4GroupSizeSupported(w.group) &&
                  w.q.scalar_type() == at::kByte && w.q.is_contiguous() &&
                  w.q.sizes() == at::IntArrayRef({N, PaddedK(K) / 2}) &&
                  w.scale.scalar_type() == at::kFloat && w.scale.is_contiguous() &&
                  w.scale.sizes() == at::IntArrayRef({N, G}) && w.zero.scalar_type() == at::kByte &&
                  w.zero.is_contiguous() && w.zero.sizes() == at::IntArrayRef({N, G}) &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "LinearInt4: x ", x.sizes(), " ", x.scalar_type(), " against int4 weights of ", N,
              " rows, K ", K, ", group ", w.group);
  TORCH_CHECK(isa != Int8Isa::kAvx512Vnni || Int8IsaAvailable(isa),
              "LinearInt4: the AVX512-VNNI kernel needs AVX512F, BW, VL and VNNI, which this CPU does not have");
  const std::vector<float> bias = FloatRows(b.defined() ? b.view({1, -1}) : b);
  const Weights wt{w.q.data_ptr<uint8_t>(), w.scale.data_ptr<float>(), w.zero.data_ptr<uint8_t>(),
                   PaddedK(K) / 2, G};
  LinearOut y(x.size(0), N, x.scalar_type());
  float* yp = y.data();
  const float* bp = bias.empty() ? nullptr : bias.data();
#ifdef R1_HAVE_AVX2_INT4_KERNEL
  if (isa == Int8Isa::kAvx512Vnni && x.size(0) >= kGemmMinRows) {
    const GemmActivations xg = QuantizeForGemm(x, w.group);
    ParallelChunks(N, kGemmChunk, [&](int64_t n0, int64_t n1) {
      if (w.group == 32) GemmRows<32>(xg, wt, bp, yp, N, n0, n1);
      else if (w.group == 64) GemmRows<64>(xg, wt, bp, yp, N, n0, n1);
      else GemmRows<128>(xg, wt, bp, yp, N, n0, n1);
    });
    return y.Finish();
  }
#endif
  const bool vnni = isa == Int8Isa::kAvx512Vnni;
  const Activations xq = QuantizeActivations(x, w.group, vnni);
  // Chunks of about 128 KiB of packed rows (VNNI: 256 KiB), taken by whichever thread runs next.
  const int64_t chunk = std::max<int64_t>(1, (vnni ? 256 << 10 : 128 << 10) / wt.row_bytes);
  ParallelChunks(N, chunk, [&](int64_t n0, int64_t n1) {
    if (vnni) {
      if (w.group == 32) Rows<32, true>(xq, wt, bp, yp, N, n0, n1);
      else if (w.group == 64) Rows<64, true>(xq, wt, bp, yp, N, n0, n1);
      else Rows<128, true>(xq, wt, bp, yp, N, n0, n1);
    } else {
      if (w.group == 32) Rows<32, false>(xq, wt, bp, yp, N, n0, n1);
      else if (w.group == 64) Rows<64, false>(xq, wt, bp, yp, N, n0, n1);
      else Rows<128, false>(xq, wt, bp, yp, N, n0, n1);
    }
  });
  return y.Finish();
}

}  // namespace r1::model
