// AttendF32 (cpu_f32.h): every (query row, KV head) is one unit of work with its own fixed
// arithmetic, so how many rows a step has, and which thread takes a unit, change nothing.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "worker/model/cpu_f32.h"
#include "worker/model/cpu_f32_lanes.h"
#include "worker/model/cpu_parallel.h"

namespace r1::model {
namespace {

// One query row: where its context lies.
struct Row {
  int64_t ctx;          // keys 0 .. ctx-1
  const int64_t* slots;
};

struct Shapes {
  int64_t heads, kvh, g, D, row_stride;  // row_stride: floats per cache slot
  float scale;
};

// out[d] = fma(p, v[d], out[d]) for d < D.
void AxpyScalar(float p, const float* v, float* out, int64_t D) {
  for (int64_t d = 0; d < D; ++d) out[d] = std::fma(p, v[d], out[d]);
}

#ifdef R1_HAVE_F32_AVX2
R1_TARGET_AVX2_FMA void AxpyAvx2(float p, const float* v, float* out, int64_t D) {
  const __m256 pv = _mm256_set1_ps(p);
  int64_t d = 0;
  for (; d + f32::kLanes <= D; d += f32::kLanes)
    _mm256_storeu_ps(out + d, _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + d), _mm256_loadu_ps(out + d)));
  for (; d < D; ++d) out[d] = std::fma(p, v[d], out[d]);  // one rounding, as the vector lanes
}
#endif

// The g query heads of row `q` (g * D floats) that share KV head h, over the row's context.
// scores: scratch for g * ctx floats; out: g * D floats.
template <bool kAvx2>
void Unit(const float* q, const float* kc, const float* vc, const Row& row, int64_t h, const Shapes& s,
          std::vector<float>& scores, float* out) {
  const int64_t ctx = row.ctx, D = s.D, g = s.g;
  scores.resize(static_cast<size_t>(g * ctx));
  float* sc = scores.data();
  // Each key is read once for the group's heads.
  for (int64_t j = 0; j < ctx; ++j) {
    const float* k = kc + row.slots[j] * s.row_stride + h * D;
    for (int64_t i = 0; i < g; ++i) {
#ifdef R1_HAVE_F32_AVX2
      const float dot = kAvx2 ? f32::DotAvx2(q + i * D, k, D) : f32::Dot(q + i * D, k, D);
#else
      const float dot = f32::Dot(q + i * D, k, D);
#endif
      sc[i * ctx + j] = dot * s.scale;
    }
  }
  // Softmax per head: the probabilities replace the scores.
  for (int64_t i = 0; i < g; ++i) {
    float* si = sc + i * ctx;
    float mx = -INFINITY;
    for (int64_t j = 0; j < ctx; ++j) mx = std::max(mx, si[j]);
    float sum = 0.f;
    for (int64_t j = 0; j < ctx; ++j) sum += (si[j] = std::exp(si[j] - mx));
    for (int64_t j = 0; j < ctx; ++j) si[j] = si[j] / sum;
  }
  std::fill(out, out + g * D, 0.f);
  // Each value is read once for the group's heads.
  for (int64_t j = 0; j < ctx; ++j) {
    const float* v = vc + row.slots[j] * s.row_stride + h * D;
    for (int64_t i = 0; i < g; ++i) {
#ifdef R1_HAVE_F32_AVX2
      if (kAvx2) {
        AxpyAvx2(sc[i * ctx + j], v, out + i * D, D);
        continue;
      }
#endif
      AxpyScalar(sc[i * ctx + j], v, out + i * D, D);
    }
  }
}

}  // namespace

void AttendF32(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
               const std::vector<AttentionSeq>& seqs, double scale, at::Tensor& out, F32Isa isa) {
  TORCH_CHECK(q.dim() == 3 && q.scalar_type() == at::kFloat && k_cache.scalar_type() == at::kFloat &&
                  v_cache.scalar_type() == at::kFloat && k_cache.dim() == 3 && k_cache.is_contiguous() &&
                  v_cache.is_contiguous() && k_cache.sizes() == v_cache.sizes() &&
                  q.size(2) == k_cache.size(2) && q.size(1) % k_cache.size(1) == 0 &&
                  out.is_contiguous() && out.sizes() == q.sizes() && out.scalar_type() == at::kFloat,
              "AttendF32: q ", q.sizes(), " ", q.scalar_type(), ", cache ", k_cache.sizes(), " ",
              k_cache.scalar_type(), ", out ", out.sizes());
  const at::Tensor qc = q.contiguous();
  Shapes s;
  s.heads = qc.size(1);
  s.D = qc.size(2);
  s.kvh = k_cache.size(1);
  s.g = s.heads / s.kvh;
  s.row_stride = s.kvh * s.D;
  s.scale = static_cast<float>(scale);
  std::vector<Row> rows;
  int64_t work = 0;
  for (const AttentionSeq& a : seqs)
    for (int64_t i = 0; i < a.num_new; ++i) {
      rows.push_back({a.num_cached + i + 1, a.slots});
      work += (a.num_cached + i + 1) * s.heads * s.D;
    }
  TORCH_CHECK(static_cast<int64_t>(rows.size()) == qc.size(0), "AttendF32: ", rows.size(),
              " rows in the sequences, ", qc.size(0), " in q");
  const float *qp = qc.data_ptr<float>(), *kp = k_cache.data_ptr<float>(), *vp = v_cache.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t units = static_cast<int64_t>(rows.size()) * s.kvh;
  std::atomic<int64_t> next{0};
  const bool avx2 = isa == F32Isa::kAvx2;
  // Units are shared out when the step's attention is worth a thread (about 64k MACs).
  ParallelRun(
      [&](int) {
        std::vector<float> scores;
        for (int64_t u; (u = next.fetch_add(1)) < units;) {
          const int64_t r = u / s.kvh, h = u % s.kvh;
          const int64_t off = (r * s.heads + h * s.g) * s.D;  // the group's first query head
          if (avx2) Unit<true>(qp + off, kp, vp, rows[static_cast<size_t>(r)], h, s, scores, op + off);
          else Unit<false>(qp + off, kp, vp, rows[static_cast<size_t>(r)], h, s, scores, op + off);
        }
      },
      work >= (int64_t{1} << 16) ? 0 : 1);
}

}  // namespace r1::model
