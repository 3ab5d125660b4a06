#include "worker/model/cpu_int8.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "worker/model/cpu_parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define R1_HAVE_AVX2_INT8_KERNEL 1
#include <immintrin.h>
// Without "fma": the epilogue's multiply and add must round separately, as ATen's do.
#define R1_TARGET_AVX2 __attribute__((target("avx2")))
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

// The activations of one call, quantized: rows padded with zeros to a multiple of 32 bytes.
struct QuantizedX {
  int64_t M = 0, K = 0, ld = 0;
  std::vector<int8_t> q;
  std::vector<uint8_t> abs;
  std::vector<float> scale;
};

QuantizedX QuantizeActivations(const at::Tensor& x) {
  at::Tensor xf = x.to(at::kFloat).contiguous();
  QuantizedX out;
  out.M = xf.size(0);
  out.K = xf.size(1);
  out.ld = (out.K + 31) / 32 * 32;
  out.q.assign(static_cast<size_t>(out.M * out.ld), 0);
  out.abs.assign(out.q.size(), 0);
  out.scale.resize(static_cast<size_t>(out.M));
  const float* src = xf.data_ptr<float>();
  ParallelChunks(out.M, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, out.K)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      out.scale[m] = QuantizeRow(src + m * out.K, out.K, out.q.data() + m * out.ld,
                                 out.abs.data() + m * out.ld);
  });
  return out;
}

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

// y[m, n] for rows [n0, n1) of W: the int32 dot products, then the scales and the bias.
R1_TARGET_AVX2 void Rows(const QuantizedX& x, const int8_t* w, const float* wscale, const float* bias,
                         float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t M = x.M, K = x.K, ld = x.ld;
  auto store = [&](int64_t m, int64_t n, int32_t acc) {
    float v = static_cast<float>(acc) * (x.scale[m] * wscale[n]);
    if (bias) v += bias[n];
    y[m * N + n] = v;
  };
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
      for (; n < n1; ++n) store(0, n, DotRow(w + n * K, K, x.q.data(), x.abs.data()));
      continue;
    }
    for (; n + 4 <= n1; n += 4) {
      int64_t m = mb;
      for (; m + 2 <= me; m += 2) {
        int32_t acc[4][2];
        DotTile<4, 2>(w + n * K, K, x.q.data() + m * ld, x.abs.data() + m * ld, ld, acc);
        for (int r = 0; r < 4; ++r)
          for (int j = 0; j < 2; ++j) store(m + j, n + r, acc[r][j]);
      }
      for (; m < me; ++m) {
        int32_t acc[4][1];
        DotTile<4, 1>(w + n * K, K, x.q.data() + m * ld, x.abs.data() + m * ld, ld, acc);
        for (int r = 0; r < 4; ++r) store(m, n + r, acc[r][0]);
      }
    }
    for (; n < n1; ++n)
      for (int64_t m = mb; m < me; ++m) {
        int32_t acc[1][1];
        DotTile<1, 1>(w + n * K, K, x.q.data() + m * ld, x.abs.data() + m * ld, ld, acc);
        store(m, n, acc[0][0]);
      }
#else
    for (; n < n1; ++n)
      for (int64_t m = mb; m < me; ++m) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += int32_t{x.q[m * ld + k]} * int32_t{w[n * K + k]};
        store(m, n, s);
      }
#endif
  }
}

}  // namespace

// With AVX2 the division and the rounding vectorize (vroundps rounds half to even, as
// nearbyint does); without it a decode step spent milliseconds in nearbyint calls.
R1_TARGET_AVX2 float QuantizeInt8Row(const float* src, int64_t K, int8_t* q) {
  float amax = 0.f;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(src[k]));
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
                      const at::Tensor& b) {
  TORCH_CHECK(x.dim() == 2 && wq.dim() == 2 && x.size(1) == wq.size(1) &&
                  wq.scalar_type() == at::kChar && wq.is_contiguous() &&
                  wscale.scalar_type() == at::kFloat && wscale.numel() == wq.size(0) &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "LinearInt8: x ", x.sizes(), " ", x.scalar_type(), ", weights ", wq.sizes(), " ",
              wq.scalar_type(), ", scales ", wscale.sizes(), " ", wscale.scalar_type());
  const int64_t M = x.size(0), N = wq.size(0), K = wq.size(1);
  const QuantizedX xq = QuantizeActivations(x);
  at::Tensor bias = b.defined() ? b.to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor ws = wscale.contiguous();
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
  const float* sp = ws.data_ptr<float>();
  const int8_t* wp = wq.data_ptr<int8_t>();
  at::Tensor y = at::empty({M, N}, x.options().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  // Chunks of about 64 KiB of weight rows, taken by whichever thread runs next.
  const int64_t chunk = std::max<int64_t>(4, (64 << 10) / K / 4 * 4);
  ParallelChunks(N, chunk, [&](int64_t n0, int64_t n1) { Rows(xq, wp, sp, bp, yp, N, n0, n1); });
  return x.scalar_type() == at::kFloat ? y : y.to(x.scalar_type());
}

}  // namespace r1::model
