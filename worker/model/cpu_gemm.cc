#include "worker/model/cpu_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "worker/model/cpu_parallel.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define R1_HAVE_AVX512BF16_KERNEL 1
// GCC 12 warns about an uninitialised variable inside its own _mm512_reduce_add_ps when it is
// inlined here (a false positive in avx512fintrin.h).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace r1::model {

#ifdef R1_HAVE_AVX512BF16_KERNEL
namespace {

#define R1_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// float -> bf16, round to nearest even (as torch does).
inline uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float FromBf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// NR rows of W (starting at w, row stride K) against MR rows of x (row stride K) over all K:
// out[m * ldo + r] = dot(x[m], w[r]) (+ bias[r]).
template <int NR, int MR>
R1_TARGET inline void MicroKernel(const uint16_t* w, const uint16_t* x, int64_t K, const uint16_t* bias,
                                  uint16_t* out, int64_t ldo) {
  __m512 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = (__m512bh)_mm512_loadu_si512(x + m * K + k);
    for (int r = 0; r < NR; ++r) {
      __m512bh wv = (__m512bh)_mm512_loadu_si512(w + r * K + k);
      for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], wv, xv[m]);
    }
  }
  if (k < K) {  // tail: masked loads read zeros past K
    __mmask32 mask = static_cast<__mmask32>((1ull << (K - k)) - 1);
    __m512bh xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + m * K + k);
    for (int r = 0; r < NR; ++r) {
      __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + r * K + k);
      for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], wv, xv[m]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    float b = bias ? FromBf16(bias[r]) : 0.f;
    for (int m = 0; m < MR; ++m) out[m * ldo + r] = ToBf16(_mm512_reduce_add_ps(acc[r][m]) + b);
  }
}

// One row of x against rows [n0, n1) of W, one W row at a time: each thread reads one
// sequential stream, which the hardware prefetchers follow best (on one core: 23-25 GB/s over
// the 1.5B shape's weights, a plain read's speed, against 17 for 4 interleaved rows). Four
// accumulators hide vdpbf16ps's latency.
R1_TARGET void GemvRows(const uint16_t* w, const uint16_t* x, const uint16_t* bias, uint16_t* y,
                        int64_t K, int64_t n0, int64_t n1) {
  const int64_t tail = K % 32;
  const __mmask32 mask = static_cast<__mmask32>((1ull << tail) - 1);
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* r = w + n * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 128 <= K; k += 128) {
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(r + k), (__m512bh)_mm512_loadu_si512(x + k));
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(r + k + 32), (__m512bh)_mm512_loadu_si512(x + k + 32));
      a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(r + k + 64), (__m512bh)_mm512_loadu_si512(x + k + 64));
      a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(r + k + 96), (__m512bh)_mm512_loadu_si512(x + k + 96));
    }
    for (; k + 32 <= K; k += 32)
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(r + k), (__m512bh)_mm512_loadu_si512(x + k));
    if (tail)
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(mask, r + k),
                            (__m512bh)_mm512_maskz_loadu_epi16(mask, x + k));
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    y[n] = ToBf16(s + (bias ? FromBf16(bias[n]) : 0.f));
  }
}

// Rows [n0, n1) of W against all M rows of x, in M blocks that stay in L2.
template <int NR>
R1_TARGET void RowRange(const uint16_t* w, const uint16_t* x, const uint16_t* bias, uint16_t* y,
                        int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
  constexpr int64_t kMBlock = 64;
  for (int64_t mb = 0; mb < M; mb += kMBlock) {
    int64_t me = std::min(M, mb + kMBlock);
    int64_t n = n0;
    for (; n + NR <= n1; n += NR) {
      const uint16_t* wr = w + n * K;
      const uint16_t* br = bias ? bias + n : nullptr;
      int64_t m = mb;
      for (; m + 4 <= me; m += 4) MicroKernel<NR, 4>(wr, x + m * K, K, br, y + m * N + n, N);
      for (; m < me; ++m) MicroKernel<NR, 1>(wr, x + m * K, K, br, y + m * N + n, N);
    }
    for (; n < n1; ++n) {
      const uint16_t* br = bias ? bias + n : nullptr;
      for (int64_t m = mb; m < me; ++m) MicroKernel<1, 1>(w + n * K, x + m * K, K, br, y + m * N + n, N);
    }
  }
}

}  // namespace

bool CpuGemmAvailable() {
  static const bool ok = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  return ok;
}

namespace {

// Large M (prefill) is compute-bound: oneDNN's blocked GEMM is faster there. Small M (decode
// batches) is bandwidth-bound: these kernels read each weight once, at memory speed.
constexpr int64_t kMaxRows = 32;

bool KernelApplies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = at::Tensor()) {
  return CpuGemmAvailable() && x.device().is_cpu() && x.scalar_type() == at::kBFloat16 &&
         w.scalar_type() == at::kBFloat16 && x.dim() == 2 && x.size(0) <= kMaxRows &&
         w.dim() == 2 && w.is_contiguous() && w.size(1) == x.size(1) &&
         (!b.defined() || (b.scalar_type() == at::kBFloat16 && b.is_contiguous()));
}

// Calls fn(n0, n1) over chunks of rows [0, N) of the weights (rows of `row_bytes`) on the
// caller and the pool workers that join (ParallelChunks): chunks of about 128 KiB, so each
// weight is read once.
template <typename Fn>
void ForEachChunk(int64_t N, int64_t row_bytes, const Fn& fn) {
  constexpr int64_t kChunkBytes = 128 << 10;
  ParallelChunks(N, std::max<int64_t>(4, kChunkBytes / row_bytes / 4 * 4), fn);
}

// Rows [n0, n1) of y = x · Wᵀ (+ b).
R1_TARGET void Rows(const uint16_t* w, const uint16_t* x, const uint16_t* bias, uint16_t* y,
                    int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
  if (M == 1) GemvRows(w, x, bias, y, K, n0, n1);
  else RowRange<4>(w, x, bias, y, M, N, K, n0, n1);
}

const uint16_t* Bf16Ptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<const uint16_t*>(t.data_ptr()) : nullptr;
}

// SiLU as ATen computes it for bf16: in float, x / (1 + exp(-x)), rounded to bf16.
inline float Silu(float v) { return v / (1.f + std::exp(-v)); }

}  // namespace

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!KernelApplies(x, w, b)) return at::linear(x, w, b);
  at::Tensor xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), N = w.size(0);
  at::Tensor y = at::empty({M, N}, xc.options());
  const uint16_t *xp = Bf16Ptr(xc), *wp = Bf16Ptr(w), *bp = Bf16Ptr(b);
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr());
  ForEachChunk(N, 2 * K, [&](int64_t n0, int64_t n1) { Rows(wp, xp, bp, yp, M, N, K, n0, n1); });
  return y;
}

at::Tensor GateUp(const at::Tensor& x, const at::Tensor& wgate, const at::Tensor& wup) {
  if (!KernelApplies(x, wgate) || !KernelApplies(x, wup) || wgate.sizes() != wup.sizes())
    return at::silu(Linear(x, wgate)).mul_(Linear(x, wup));
  at::Tensor xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), N = wgate.size(0);
  at::Tensor g = at::empty({M, N}, xc.options()), u = at::empty({M, N}, xc.options());
  at::Tensor out = at::empty({M, N}, xc.options());
  auto *gp = reinterpret_cast<uint16_t*>(g.data_ptr()), *up = reinterpret_cast<uint16_t*>(u.data_ptr());
  auto* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  const uint16_t *xp = Bf16Ptr(xc), *wg = Bf16Ptr(wgate), *wu = Bf16Ptr(wup);
  // Each chunk of columns: its rows of both weights, then the activation, on one thread.
  ForEachChunk(N, 4 * K, [&](int64_t n0, int64_t n1) {
    Rows(wg, xp, nullptr, gp, M, N, K, n0, n1);
    Rows(wu, xp, nullptr, up, M, N, K, n0, n1);
    // silu(g) * u with the unfused ops' roundings: g, silu(g), u and the product in bf16.
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = m * N + n0; i < m * N + n1; ++i)
        op[i] = ToBf16(FromBf16(ToBf16(Silu(FromBf16(gp[i])))) * FromBf16(up[i]));
  });
  return out;
}

#endif

at::Tensor ToFloat(const at::Tensor& x) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kBFloat16) return x.to(at::kFloat);
  at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty(xc.sizes(), xc.options().dtype(at::kFloat));
  const auto* src = reinterpret_cast<const uint16_t*>(xc.data_ptr());
  auto* dst = reinterpret_cast<uint32_t*>(y.data_ptr());  // bf16 is the top half of a float
  for (int64_t i = 0, n = xc.numel(); i < n; ++i) dst[i] = static_cast<uint32_t>(src[i]) << 16;
  return y;
}

#ifndef R1_HAVE_AVX512BF16_KERNEL  // no AVX512-BF16 kernel in this build

bool CpuGemmAvailable() { return false; }
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::linear(x, w, b);
}
at::Tensor GateUp(const at::Tensor& x, const at::Tensor& wgate, const at::Tensor& wup) {
  return at::silu(at::linear(x, wgate)).mul_(at::linear(x, wup));
}

#endif

}  // namespace r1::model
