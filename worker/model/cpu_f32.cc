#include "worker/model/cpu_f32.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "worker/model/cpu_f32_lanes.h"
#include "worker/model/cpu_parallel.h"

namespace r1::model {

using f32::kLanes;

F32Isa BestF32Isa() {
#ifdef R1_HAVE_F32_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? F32Isa::kAvx2 : F32Isa::kScalar;
#else
  return F32Isa::kScalar;
#endif
}

namespace {

// One tile of the output: MR rows of x against NR rows of W, over all of K (rows of K floats),
// into y[r * ldy + c] (plus bias[c]).
struct Tile {
  const float* x;
  const float* w;
  int64_t K;
  const float* bias;
  float* y;
  int64_t ldy;
};

inline float AddBias(float s, const float* bias, int64_t c) { return bias ? s + bias[c] : s; }

void TileScalar(const Tile& t, int64_t mr, int64_t nr) {
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t c = 0; c < nr; ++c)
      t.y[r * t.ldy + c] = AddBias(f32::Dot(t.x + r * t.K, t.w + c * t.K, t.K), t.bias, c);
}

#ifdef R1_HAVE_F32_AVX2

// 3 x 4 tiles keep 12 accumulators, 3 rows of x and one of W in the 16 ymm registers: 7 loads
// for 12 multiply-adds, no spills (GCC 12).
template <int MR, int NR>
R1_TARGET_AVX2_FMA void TileAvx2(const Tile& t) {
  __m256 a[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) a[r][c] = _mm256_setzero_ps();
  const int64_t K = t.K;
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    __m256 xv[MR];
    for (int r = 0; r < MR; ++r) xv[r] = _mm256_loadu_ps(t.x + r * K + k);
    for (int c = 0; c < NR; ++c) {
      const __m256 wv = _mm256_loadu_ps(t.w + c * K + k);
      for (int r = 0; r < MR; ++r) a[r][c] = _mm256_fmadd_ps(xv[r], wv, a[r][c]);
    }
  }
  if (k < K) {  // the last partial group of eight
    const __m256i m = f32::TailMask(K - k);
    __m256 xv[MR];
    for (int r = 0; r < MR; ++r) xv[r] = _mm256_maskload_ps(t.x + r * K + k, m);
    for (int c = 0; c < NR; ++c) {
      const __m256 wv = _mm256_maskload_ps(t.w + c * K + k, m);
      for (int r = 0; r < MR; ++r) a[r][c] = _mm256_fmadd_ps(xv[r], wv, a[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) t.y[r * t.ldy + c] = AddBias(f32::ReduceLanes(a[r][c]), t.bias, c);
}

template <int MR>
void TileAvx2Rows(const Tile& t, int64_t nr) {
  switch (nr) {
    case 1: return TileAvx2<MR, 1>(t);
    case 2: return TileAvx2<MR, 2>(t);
    case 3: return TileAvx2<MR, 3>(t);
    default: return TileAvx2<MR, 4>(t);
  }
}

void RunTile(const Tile& t, int64_t mr, int64_t nr, F32Isa isa) {
  if (isa == F32Isa::kScalar) return TileScalar(t, mr, nr);
  switch (mr) {
    case 1: return TileAvx2Rows<1>(t, nr);
    case 2: return TileAvx2Rows<2>(t, nr);
    default: return TileAvx2Rows<3>(t, nr);
  }
}

#else

void RunTile(const Tile& t, int64_t mr, int64_t nr, F32Isa) { TileScalar(t, mr, nr); }

#endif

constexpr int64_t kTileRows = 3, kTileCols = 4;

// One task: up to 48 rows of x against a block of W rows, the block's tiles column group by
// column group, so each group of four W rows is read from memory once and then from L1/L2
// while every row of x passes it. Decode-sized M takes blocks of about 128 KiB of W rows (long
// sequential reads, few tasks); prefill takes 8 rows, so there are tasks for every thread.
// Each tile keeps its sums in registers over all of K: no K blocks, no packing. On the 2-core
// AVX2 VM this was written on, M = 128 over the 1.5B's projections ran at 34-37 GFLOP/s, about
// OpenBLAS's speed in the same process, and faster than K steps of 256-1024 through a packed
// block of W (whose partial sums go to memory between steps).
constexpr int64_t kDecodeRows = 12, kRowBlock = 48, kPrefillCols = 8;

void LinearRaw(const float* x, const float* w, const float* bias, float* y, int64_t M, int64_t N,
               int64_t K, F32Isa isa) {
  const int64_t mb = std::min(M, kRowBlock);
  const int64_t nb = M <= kDecodeRows
                         ? std::max(kTileCols, (128 << 10) / (4 * K) / kTileCols * kTileCols)
                         : kPrefillCols;
  const int64_t m_blocks = (M + mb - 1) / mb, n_blocks = (N + nb - 1) / nb;
  ParallelChunks(m_blocks * n_blocks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      // Consecutive tasks share a block of W (read once from memory, then from the L3).
      const int64_t m0 = (task % m_blocks) * mb, m1 = std::min(M, m0 + mb);
      const int64_t n0 = (task / m_blocks) * nb, n1 = std::min(N, n0 + nb);
      for (int64_t n = n0; n < n1; n += kTileCols)
        for (int64_t m = m0; m < m1; m += kTileRows) {
          const Tile t{x + m * K, w + n * K, K, bias ? bias + n : nullptr, y + m * N + n, N};
          RunTile(t, std::min(kTileRows, m1 - m), std::min(kTileCols, n1 - n), isa);
        }
    }
  });
}

const float* FloatPtr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// fn(begin, end) over [0, n) elements, in chunks of about 16k on the pool.
template <typename Fn>
void ForElements(int64_t n, const Fn& fn) {
  ParallelChunks(n, 16384, fn);
}

}  // namespace

at::Tensor LinearF32(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, F32Isa isa) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1) && x.device().is_cpu() &&
                  x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
                  (!b.defined() || (b.scalar_type() == at::kFloat && b.numel() == w.size(0))),
              "LinearF32: x ", x.sizes(), " ", x.scalar_type(), ", w ", w.sizes(), " ", w.scalar_type());
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  const at::Tensor bc = b.defined() ? b.contiguous() : b;
  const int64_t M = xc.size(0), K = xc.size(1), N = wc.size(0);
  at::Tensor y = at::empty({M, N}, xc.options());
  if (K == 0) return b.defined() ? y.copy_(bc.expand({M, N})) : y.zero_();
  LinearRaw(FloatPtr(xc), FloatPtr(wc), FloatPtr(bc), y.data_ptr<float>(), M, N, K, isa);
  return y;
}

at::Tensor SiluMulF32(const at::Tensor& g, const at::Tensor& u) {
  TORCH_CHECK(g.sizes() == u.sizes() && g.scalar_type() == at::kFloat && u.scalar_type() == at::kFloat);
  const at::Tensor gc = g.contiguous(), uc = u.contiguous();
  at::Tensor out = at::empty(gc.sizes(), gc.options());
  const float *gp = FloatPtr(gc), *up = FloatPtr(uc);
  float* op = out.data_ptr<float>();
  ForElements(gc.numel(), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) op[i] = gp[i] / (1.f + std::exp(-gp[i])) * up[i];
  });
  return out;
}

at::Tensor RmsNormF32(const at::Tensor& x, const at::Tensor& w, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
              w.numel() == x.size(1));
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  const int64_t T = xc.size(0), H = xc.size(1);
  at::Tensor out = at::empty({T, H}, xc.options());
  const float *xp = FloatPtr(xc), *wp = FloatPtr(wc);
  float* op = out.data_ptr<float>();
  const float e = static_cast<float>(eps);
  const bool avx2 = BestF32Isa() == F32Isa::kAvx2;
  ParallelChunks(T, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, H)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* r = xp + t * H;
#ifdef R1_HAVE_F32_AVX2
      const float sq = avx2 ? f32::DotAvx2(r, r, H) : f32::Dot(r, r, H);
#else
      const float sq = f32::Dot(r, r, H);
#endif
      const float inv = 1.f / std::sqrt(sq / static_cast<float>(H) + e);
      for (int64_t i = 0; i < H; ++i) op[t * H + i] = wp[i] * (r[i] * inv);
    }
  });
  return out;
}

std::pair<at::Tensor, at::Tensor> RopeTablesF32(const std::vector<int64_t>& pos, const at::Tensor& inv_freq) {
  const at::Tensor f = inv_freq.to(at::kFloat).contiguous();
  const int64_t T = static_cast<int64_t>(pos.size()), half = f.numel();
  at::Tensor cos = at::empty({T, 1, half}, f.options()), sin = at::empty({T, 1, half}, f.options());
  const float* fp = FloatPtr(f);
  float *cp = cos.data_ptr<float>(), *sp = sin.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float a = static_cast<float>(pos[static_cast<size_t>(t)]) * fp[i];
      cp[t * half + i] = std::cos(a);
      sp[t * half + i] = std::sin(a);
    }
  return {cos, sin};
}

}  // namespace r1::model
