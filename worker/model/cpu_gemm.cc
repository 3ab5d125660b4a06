#include "worker/model/cpu_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
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
// sequential stream, which the hardware prefetchers follow best (interleaving 4 rows measured
// 17 GB/s against 23-25 for this on the 1.5B shape's weights, 2 threads). Four accumulators
// hide vdpbf16ps's latency.
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

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  // Large M (prefill) is compute-bound: oneDNN's blocked GEMM is faster there. Small M (decode
  // batches) is bandwidth-bound: this kernel reads each weight once, at memory speed.
  constexpr int64_t kMaxRows = 32;
  if (!CpuGemmAvailable() || !x.device().is_cpu() || x.scalar_type() != at::kBFloat16 ||
      w.scalar_type() != at::kBFloat16 || x.dim() != 2 || x.size(0) > kMaxRows ||
      !w.is_contiguous() ||
      (b.defined() && (b.scalar_type() != at::kBFloat16 || !b.is_contiguous()))) {
    return at::linear(x, w, b);
  }
  at::Tensor xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K, "Linear: x is [", M, ", ", K, "] but w is [", N, ", ", w.size(1), "]");
  at::Tensor y = at::empty({M, N}, xc.options());
  const auto* xp = reinterpret_cast<const uint16_t*>(xc.data_ptr());
  const auto* wp = reinterpret_cast<const uint16_t*>(w.data_ptr());
  const auto* bp = b.defined() ? reinterpret_cast<const uint16_t*>(b.data_ptr()) : nullptr;
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr());
  // Threads take chunks of rows (about 128 KiB of W each) from a shared counter, so each
  // weight is read once and a thread slowed by a busy core does less of the work instead of
  // holding everyone up.
  constexpr int64_t NR = 4, kChunkBytes = 128 << 10;
  const int64_t chunk = std::max<int64_t>(NR, kChunkBytes / (2 * K) / NR * NR);
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), (N + chunk - 1) / chunk);
  ParallelRun(
      [&](int, int) {
        for (int64_t n0; (n0 = next.fetch_add(chunk)) < N;) {
          const int64_t n1 = std::min(N, n0 + chunk);
          if (M == 1) GemvRows(wp, xp, bp, yp, K, n0, n1);
          else RowRange<NR>(wp, xp, bp, yp, M, N, K, n0, n1);
        }
      },
      static_cast<int>(threads));
  return y;
}

#else  // no AVX512-BF16 kernel in this build

bool CpuGemmAvailable() { return false; }
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::linear(x, w, b);
}

#endif

}  // namespace r1::model
