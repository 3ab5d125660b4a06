#include "worker/model/cpu_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "worker/model/cpu_gemm.h"
#include "worker/model/cpu_parallel.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define R1_HAVE_ATTENTION_KERNEL 1
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace r1::model {

#ifdef R1_HAVE_ATTENTION_KERNEL
namespace {

#define R1_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// The float32 values of bf16-rounded x (nearest even), 16 lanes: what storing x to a bf16
// tensor and reading it back gives.
R1_TARGET inline __m512 RoundBf16(__m512 x) {
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// exp(x) for x <= 0, 16 lanes: 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 split in
// two constants, exp(r) by Cephes' expf polynomial (within 2 ulp of std::exp); below -88 the
// result is 0 (or a denormal), NaN stays NaN.
R1_TARGET inline __m512 ExpNonPositive(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-88.f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// The cache rows kPrefetchKeys keys ahead are asked for while this key is computed: a KV head's
// rows are 256 bytes out of every slot's kv_heads * 256, in 4 KiB pages the hardware
// prefetcher does not cross, and without this the loops wait on every load (decode at 16k
// context spent 5x the KV bytes' time in attention).
constexpr int64_t kPrefetchKeys = 16;

R1_TARGET inline void Prefetch(const void* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(static_cast<const char*>(p) + b, _MM_HINT_T0);
}

constexpr int kMaxGroup = 8;  // query heads per KV head handled in one pass (the distills: 4-8)
constexpr int64_t kChunkKeys = 512;  // keys per unit of work (flash-decoding's split)

// A chunk of keys for the G query heads of one KV head (q: G rows of D), each K and V row
// read once for the whole group (a decode step reads the context's KV bytes once, not once per
// query head). Flash-decoding's partial softmax:
//   1. scores: each K row against the G queries (float dot products, then bmm's bf16 output
//      and mul_(scale)'s bf16 result, as the ATen path rounds them);
//   2. per head, the chunk's max m and e = exp(score - m), l = Σ e, in float;
//   3. acc = Σ e * V, 16 * W columns at a time with G x W float accumulators in registers.
// DecodeAttention merges the chunks. slots: the chunk's n cache rows; acc: G x D floats; m, l:
// G floats; scores: G * n floats of scratch.
template <int G, int W>
R1_TARGET void Group(const uint16_t* q, const uint16_t* kc, const uint16_t* vc, int64_t row_stride,
                     const int64_t* slots, int64_t n, float scale, int64_t D, float* acc_out, float* m_out,
                     float* l_out, float* scores) {
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* k = kc + slots[j] * row_stride;
    if (j + kPrefetchKeys < n) Prefetch(kc + slots[j + kPrefetchKeys] * row_stride, 2 * D);
    __m512 acc[G];
#pragma GCC unroll 8
    for (int r = 0; r < G; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 32) {
      const __m512bh kv = (__m512bh)_mm512_loadu_si512(k + d);
#pragma GCC unroll 8
      for (int r = 0; r < G; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_loadu_si512(q + r * D + d), kv);
    }
#pragma GCC unroll 8
    for (int r = 0; r < G; ++r) scores[r * n + j] = _mm512_reduce_add_ps(acc[r]);
  }
  const __m512 sv = _mm512_set1_ps(scale);
  const __mmask16 tail = static_cast<__mmask16>((1u << (n % 16)) - 1);
  const int64_t whole = n - n % 16;
  for (int r = 0; r < G; ++r) {
    float* s = scores + r * n;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < whole; j += 16) {
      const __m512 x = RoundBf16(_mm512_mul_ps(RoundBf16(_mm512_loadu_ps(s + j)), sv));
      _mm512_storeu_ps(s + j, x);
      mx = _mm512_max_ps(mx, x);
    }
    if (tail) {
      const __m512 x = RoundBf16(_mm512_mul_ps(RoundBf16(_mm512_maskz_loadu_ps(tail, s + whole)), sv));
      _mm512_mask_storeu_ps(s + whole, tail, x);
      mx = _mm512_mask_max_ps(mx, tail, mx, x);
    }
    m_out[r] = _mm512_reduce_max_ps(mx);
    const __m512 m = _mm512_set1_ps(m_out[r]);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < whole; j += 16) {
      const __m512 e = ExpNonPositive(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
      _mm512_storeu_ps(s + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
      const __m512 e = ExpNonPositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + whole), m));
      _mm512_mask_storeu_ps(s + whole, tail, e);
      sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    l_out[r] = _mm512_reduce_add_ps(sum);
  }
  for (int64_t d0 = 0; d0 < D; d0 += 16 * W) {
    __m512 acc[G][W];
#pragma GCC unroll 8
    for (int r = 0; r < G; ++r)
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w) acc[r][w] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const uint16_t* v = vc + slots[j] * row_stride + d0;
      if (j + kPrefetchKeys < n) Prefetch(vc + slots[j + kPrefetchKeys] * row_stride + d0, 32 * W);
      __m512 vf[W];
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w)
        vf[w] = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + 16 * w))), 16));
#pragma GCC unroll 8
      for (int r = 0; r < G; ++r) {
        const __m512 p = _mm512_set1_ps(scores[r * n + j]);
#pragma GCC unroll 4
        for (int w = 0; w < W; ++w) acc[r][w] = _mm512_fmadd_ps(p, vf[w], acc[r][w]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < G; ++r)
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w) _mm512_storeu_ps(acc_out + r * D + d0 + 16 * w, acc[r][w]);
  }
}

// Group<G, W> for a group size known at run time: W = 4 (64 columns a pass) while the
// accumulators fit the 32 registers, else 2 (D is a multiple of 32).
R1_TARGET void GroupAnySize(int g, const uint16_t* q, const uint16_t* kc, const uint16_t* vc, int64_t row_stride,
                            const int64_t* slots, int64_t n, float scale, int64_t D, float* acc, float* m,
                            float* l, float* scores) {
  const bool wide = D % 64 == 0;
  switch (g) {
#define R1_GROUP_CASE(G)                                                                            \
  case G:                                                                                           \
    return wide ? Group<G, (G <= 6 ? 4 : 2)>(q, kc, vc, row_stride, slots, n, scale, D, acc, m, l, scores) \
                : Group<G, 2>(q, kc, vc, row_stride, slots, n, scale, D, acc, m, l, scores);
    R1_GROUP_CASE(1) R1_GROUP_CASE(2) R1_GROUP_CASE(3) R1_GROUP_CASE(4)
    R1_GROUP_CASE(5) R1_GROUP_CASE(6) R1_GROUP_CASE(7) R1_GROUP_CASE(8)
#undef R1_GROUP_CASE
  }
}

}  // namespace

bool DecodeAttentionApplies(const at::Tensor& q, const at::Tensor& k_cache) {
  return CpuGemmAvailable() && q.device().is_cpu() && q.scalar_type() == at::kBFloat16 &&
         k_cache.scalar_type() == at::kBFloat16 && q.dim() == 3 && q.size(0) == 1 &&
         q.size(2) % 32 == 0 && k_cache.dim() == 3 && k_cache.is_contiguous() &&
         q.size(1) % k_cache.size(1) == 0;
}

at::Tensor DecodeAttention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const std::vector<int64_t>& slots, double scale) {
  at::Tensor qc = q.contiguous();
  const int64_t heads = qc.size(1), D = qc.size(2), kvh = k_cache.size(1), g = heads / kvh;
  at::Tensor out = at::empty({1, heads, D}, qc.options());
  const auto* qp = reinterpret_cast<const uint16_t*>(qc.data_ptr());
  const auto* kp = reinterpret_cast<const uint16_t*>(k_cache.data_ptr());
  const auto* vp = reinterpret_cast<const uint16_t*>(v_cache.data_ptr());
  auto* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  const int64_t row = kvh * D;  // elements per cache slot
  // bmm's scale is a double applied to bf16 scores in float.
  const float s = static_cast<float>(scale);
  const int64_t ctx = static_cast<int64_t>(slots.size());
  // Units of work: a chunk of keys for a KV head with (at most kMaxGroup of) its query heads,
  // taken chunk by chunk, so that every thread has work at any context length and the
  // partial results below stay small. They are shared out when the context makes them worth a
  // thread (about 64k MACs each).
  const int64_t per_unit = std::min<int64_t>(g, kMaxGroup), units_per_kv = (g + per_unit - 1) / per_unit;
  const int64_t per_chunk = kvh * units_per_kv, chunks = std::max<int64_t>(1, (ctx + kChunkKeys - 1) / kChunkKeys);
  const int64_t units = chunks * per_chunk, chunk_len = std::min(ctx, kChunkKeys);
  std::vector<float> acc(static_cast<size_t>(chunks * heads * D)), mx(static_cast<size_t>(chunks * heads)),
      sum(static_cast<size_t>(chunks * heads));
  std::atomic<int64_t> next{0};
  const int threads = ctx * D * per_unit >= (int64_t{1} << 16) ? 0 : 1;
  ParallelRun(
      [&](int) {
        std::vector<float> scores(static_cast<size_t>(per_unit * chunk_len));
        for (int64_t u; (u = next.fetch_add(1)) < units;) {
          const int64_t c = u / per_chunk, kv = (u % per_chunk) / units_per_kv;
          const int64_t h0 = kv * g + (u % units_per_kv) * per_unit, j0 = c * kChunkKeys;
          const int n = static_cast<int>(std::min(per_unit, (kv + 1) * g - h0));
          const int64_t at = c * heads + h0;
          GroupAnySize(n, qp + h0 * D, kp + kv * D, vp + kv * D, row, slots.data() + j0, std::min(kChunkKeys, ctx - j0),
                       s, D, acc.data() + at * D, mx.data() + at, sum.data() + at, scores.data());
        }
      },
      threads);
  // The chunks merged, per head: each chunk's sums rescaled from its own max to the overall
  // one, then out = Σ acc / Σ l, rounded once to bf16.
  std::vector<float> o(static_cast<size_t>(D));
  for (int64_t h = 0; h < heads; ++h) {
    float m = -INFINITY;
    for (int64_t c = 0; c < chunks; ++c) m = std::max(m, mx[static_cast<size_t>(c * heads + h)]);
    float l = 0;
    std::fill(o.begin(), o.end(), 0.f);
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t at = static_cast<size_t>(c * heads + h);
      const float w = std::exp(mx[at] - m);
      l += w * sum[at];
      const float* a = acc.data() + at * D;
      for (int64_t d = 0; d < D; ++d) o[static_cast<size_t>(d)] += w * a[d];
    }
    for (int64_t d = 0; d < D; ++d) op[h * D + d] = c10::BFloat16(o[static_cast<size_t>(d)] / l).x;  // nearest even
  }
  return out;
}

#else

bool DecodeAttentionApplies(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor DecodeAttention(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const std::vector<int64_t>&, double) {
  TORCH_CHECK(false, "DecodeAttention: not built for this CPU");
}

#endif

}  // namespace r1::model
