#include "worker/model/cpu_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

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

inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to bf16 and back (nearest even), as a bf16 tensor stores it.
inline float RoundBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return f;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

// dot(a, b) over D bf16 values (D a multiple of 32), float accumulation.
R1_TARGET inline float Dot(const uint16_t* a, const uint16_t* b, int64_t D) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d += 32)
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(a + d), (__m512bh)_mm512_loadu_si512(b + d));
  return _mm512_reduce_add_ps(acc);
}

// out[0..D) += p * v[0..D) (v bf16, D a multiple of 16).
R1_TARGET inline void Axpy(float p, const uint16_t* v, float* out, int64_t D) {
  const __m512 pv = _mm512_set1_ps(p);
  for (int64_t d = 0; d < D; d += 16) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + d)));
    __m512 vf = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    _mm512_storeu_ps(out + d, _mm512_fmadd_ps(pv, vf, _mm512_loadu_ps(out + d)));
  }
}

// One query head against its KV head over every slot.
R1_TARGET void Head(const uint16_t* q, const uint16_t* kc, const uint16_t* vc, int64_t row_stride,
                    const std::vector<int64_t>& slots, float scale, int64_t D, uint16_t* out,
                    std::vector<float>& scores, std::vector<float>& acc) {
  const int64_t ctx = static_cast<int64_t>(slots.size());
  scores.resize(static_cast<size_t>(ctx));
  float mx = -INFINITY;
  for (int64_t j = 0; j < ctx; ++j) {
    // bmm's output, then mul_(scale), each stored in bf16.
    float s = RoundBf16(RoundBf16(Dot(q, kc + slots[static_cast<size_t>(j)] * row_stride, D)) * scale);
    scores[static_cast<size_t>(j)] = s;
    mx = std::max(mx, s);
  }
  float sum = 0;
  for (float& s : scores) sum += (s = std::exp(s - mx));
  acc.assign(static_cast<size_t>(D), 0.f);
  for (int64_t j = 0; j < ctx; ++j) {
    float p = RoundBf16(scores[static_cast<size_t>(j)] / sum);  // softmax in float, then bf16
    Axpy(p, vc + slots[static_cast<size_t>(j)] * row_stride, acc.data(), D);
  }
  for (int64_t d = 0; d < D; ++d) {
    float r = RoundBf16(acc[static_cast<size_t>(d)]);
    uint32_t u;
    std::memcpy(&u, &r, 4);
    out[d] = static_cast<uint16_t>(u >> 16);
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
  std::atomic<int64_t> next{0};
  // Heads are shared out when the context makes them worth a thread (about 64k MACs each).
  const int64_t ctx = static_cast<int64_t>(slots.size());
  const int threads = ctx * D >= (int64_t{1} << 16) ? 0 : 1;
  ParallelRun(
      [&](int) {
        std::vector<float> scores, acc;
        for (int64_t h; (h = next.fetch_add(1)) < heads;)
          Head(qp + h * D, kp + (h / g) * D, vp + (h / g) * D, row, slots, s, D, op + h * D, scores, acc);
      },
      threads);
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
