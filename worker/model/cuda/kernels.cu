// CUDA kernels for the Qwen2 step; see kernels.h for what each computes and the layouts.
// Arithmetic is float32 inside; values are rounded to the model's dtype where transformers
// rounds them (one bf16 op after another), so bf16 results stay within bf16 noise of it.
#include "worker/model/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstring>
#include <type_traits>

namespace r1::model::cuda {
namespace {

// --- dtype helpers -------------------------------------------------------------------------

__device__ __forceinline__ float ToF(float v) { return v; }
__device__ __forceinline__ float ToF(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToF(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromF(float v);
template <>
__device__ __forceinline__ float FromF<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromF<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// v rounded to T and back: what storing a float32 result in a T tensor does.
template <typename T>
__device__ __forceinline__ float Round(float v) { return ToF(FromF<T>(v)); }

// N consecutive T values as floats, in one load when N * sizeof(T) is 4, 8 or 16 bytes
// (the caller guarantees that alignment).
template <typename T, int N>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[N]) {
  constexpr int kBytes = N * static_cast<int>(sizeof(T));
  if constexpr (kBytes == 16 || kBytes == 8 || kBytes == 4) {
    using V = typename std::conditional<kBytes == 16, uint4,
                                        typename std::conditional<kBytes == 8, uint2, uint32_t>::type>::type;
    V raw = *reinterpret_cast<const V*>(p);
    T vals[N];
    memcpy(vals, &raw, kBytes);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = ToF(vals[i]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = ToF(p[i]);
  }
}

template <int kThreads>
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float warp_sums[kThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kThreads / 32; ++i) s += warp_sums[i];
  return s;
}

// --- residual add + RMSNorm ----------------------------------------------------------------

template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads) AddRmsNormKernel(T* __restrict__ x,
                                                            const T* __restrict__ delta,
                                                            const T* __restrict__ w,
                                                            T* __restrict__ out, int H, float eps) {
  extern __shared__ float row_f[];  // H floats: the row after the add
  const int64_t base = static_cast<int64_t>(blockIdx.x) * H;
  float ss = 0.f;
  for (int i = threadIdx.x; i < H; i += kThreads) {
    float v = ToF(x[base + i]);
    if (delta != nullptr) {
      v = Round<T>(v + ToF(delta[base + i]));
      x[base + i] = FromF<T>(v);
    }
    row_f[i] = v;
    ss += v * v;
  }
  ss = BlockSum<kThreads>(ss);
  const float r = rsqrtf(ss / static_cast<float>(H) + eps);
  for (int i = threadIdx.x; i < H; i += kThreads) {
    out[base + i] = FromF<T>(ToF(w[i]) * Round<T>(row_f[i] * r));
  }
}

// --- RoPE + KV-cache write -----------------------------------------------------------------

template <typename T>
__global__ void RopeKvWriteKernel(T* __restrict__ qkv, int64_t ld, const int32_t* __restrict__ pos,
                                  const int32_t* __restrict__ slots,
                                  const float* __restrict__ inv_freq, T* __restrict__ kc,
                                  T* __restrict__ vc, int nh, int kvh, int D) {
  const int t = blockIdx.x;
  const int half = D / 2;
  const float p = static_cast<float>(pos[t]);
  const int64_t slot = slots[t];
  T* row = qkv + static_cast<int64_t>(t) * ld;
  const int pairs = (nh + kvh) * half;
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    const int h = i / half, j = i - h * half;
    const float f = p * inv_freq[j];
    const float c = Round<T>(cosf(f)), s = Round<T>(sinf(f));
    T* head = row + h * D;
    const float x1 = ToF(head[j]), x2 = ToF(head[j + half]);
    // q * cos + rotate_half(q) * sin, rotate_half(q) = [-x2, x1]; each op rounded.
    const T y1 = FromF<T>(Round<T>(x1 * c) + Round<T>(-x2 * s));
    const T y2 = FromF<T>(Round<T>(x2 * c) + Round<T>(x1 * s));
    head[j] = y1;
    head[j + half] = y2;
    if (h >= nh) {
      T* dst = kc + (slot * kvh + (h - nh)) * D;
      dst[j] = y1;
      dst[j + half] = y2;
    }
  }
  const T* v = row + (nh + kvh) * D;
  T* vdst = vc + slot * kvh * D;
  for (int i = threadIdx.x; i < kvh * D; i += blockDim.x) vdst[i] = v[i];
}

// --- SiLU and multiply ---------------------------------------------------------------------

template <typename T>
__global__ void SiluMulKernel(const T* __restrict__ gu, T* __restrict__ out, int64_t rows,
                              int64_t I) {
  const int64_t n = rows * I;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / I, i = idx - t * I;
    const float g = ToF(gu[t * 2 * I + i]), u = ToF(gu[t * 2 * I + I + i]);
    const float s = Round<T>(g / (1.f + expf(-g)));
    out[idx] = FromF<T>(s * u);
  }
}

// --- paged attention (single query rows) ---------------------------------------------------
//
// One thread block per (split, kv head, query); kWarps warps. Lane l of every warp holds dims
// [l * kDPL, (l + 1) * kDPL) of the query heads of this kv head's group (at most kMaxG of them).
// Each warp takes every kWarps-th key of the block's range: one coalesced load of the key row,
// kMaxG dot products reduced across the warp, an online-softmax update, then the value row.
// The warps' partial results are merged through shared memory at the end.

constexpr int kWarps = 4;

template <typename T, int kDPL, int kMaxG>
__global__ void __launch_bounds__(kWarps * 32)
    PagedAttentionKernel(PagedAttentionArgs a) {
  const int split = blockIdx.x, kh = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int G = a.nh / a.kvh, D = a.D;
  const int len = a.q_lens[b];
  const int per = (len + a.nsplit - 1) / a.nsplit;
  const int start = split * per, end = min(len, start + per);
  const int d0 = lane * kDPL;
  const bool lane_on = d0 < D;
  const T* qrow = static_cast<const T*>(a.qkv) + static_cast<int64_t>(a.q_rows[b]) * a.ld;
  const int32_t* table = a.tables + static_cast<int64_t>(a.q_seq[b]) * a.table_stride;
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  const float scale_log2 = a.scale * 1.4426950408889634f;  // exp(x) = exp2(x * log2(e))

  float q[kMaxG][kDPL];
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) {
#pragma unroll
    for (int e = 0; e < kDPL; ++e) q[g][e] = 0.f;
    if (g < G && lane_on) LoadVec<T, kDPL>(qrow + (kh * G + g) * D + d0, q[g]);
  }
  float m[kMaxG], l[kMaxG], acc[kMaxG][kDPL];
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) {
    m[g] = -FLT_MAX;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < kDPL; ++e) acc[g][e] = 0.f;
  }

  for (int j = start + warp; j < end; j += kWarps) {
    const int64_t slot = static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
    const int64_t off = (slot * a.kvh + kh) * D + d0;
    float k[kDPL], v[kDPL];
    if (lane_on) {
      LoadVec<T, kDPL>(kc + off, k);
      LoadVec<T, kDPL>(vc + off, v);
    } else {
#pragma unroll
      for (int e = 0; e < kDPL; ++e) k[e] = v[e] = 0.f;
    }
    float s[kMaxG];
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      float dot = 0.f;
#pragma unroll
      for (int e = 0; e < kDPL; ++e) dot += q[g][e] * k[e];
      s[g] = dot;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
      for (int g = 0; g < kMaxG; ++g) s[g] += __shfl_xor_sync(0xffffffffu, s[g], o);
    }
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      const float x = s[g] * scale_log2;
      const float m_new = fmaxf(m[g], x);
      const float alpha = exp2f(m[g] - m_new), p = exp2f(x - m_new);
      l[g] = l[g] * alpha + p;
#pragma unroll
      for (int e = 0; e < kDPL; ++e) acc[g][e] = acc[g][e] * alpha + p * v[e];
      m[g] = m_new;
    }
  }

  // Merge the warps: each writes (m, l, acc) to shared memory, then the block combines them.
  __shared__ float sm_m[kWarps][kMaxG], sm_l[kWarps][kMaxG];
  extern __shared__ float sm_acc[];  // [kWarps][kMaxG][D]
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      sm_m[warp][g] = m[g];
      sm_l[warp][g] = l[g];
    }
  }
  if (lane_on) {
#pragma unroll
    for (int g = 0; g < kMaxG; ++g)
#pragma unroll
      for (int e = 0; e < kDPL; ++e) sm_acc[(warp * kMaxG + g) * D + d0 + e] = acc[g][e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += kWarps * 32) {
    const int g = i / D, d = i - g * D;
    float M = -FLT_MAX;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm_m[w][g]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = exp2f(sm_m[w][g] - M);  // 0 for a warp that saw no key
      L += sm_l[w][g] * f;
      O += sm_acc[(w * kMaxG + g) * D + d] * f;
    }
    const int h = kh * G + g;
    if (a.nsplit == 1) {
      T* out = static_cast<T*>(a.out) + static_cast<int64_t>(a.q_rows[b]) * a.out_ld;
      out[h * D + d] = FromF<T>(L > 0.f ? O / L : 0.f);
    } else {
      // partial layout: [query][head][split][D + 2] = acc..., m, l (unnormalised).
      float* p = a.partial + ((static_cast<int64_t>(b) * a.nh + h) * a.nsplit + split) * (D + 2);
      p[d] = O;
      if (d == 0) {
        p[D] = M;
        p[D + 1] = L;
      }
    }
  }
}

template <typename T>
__global__ void PagedAttentionCombineKernel(PagedAttentionArgs a) {
  const int h = blockIdx.x, b = blockIdx.y, D = a.D;
  const float* base = a.partial + (static_cast<int64_t>(b) * a.nh + h) * a.nsplit * (D + 2);
  float M = -FLT_MAX;
  for (int s = 0; s < a.nsplit; ++s) M = fmaxf(M, base[s * (D + 2) + D]);
  T* out = static_cast<T*>(a.out) + static_cast<int64_t>(a.q_rows[b]) * a.out_ld + h * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float L = 0.f, O = 0.f;
    for (int s = 0; s < a.nsplit; ++s) {
      const float* p = base + s * (D + 2);
      const float f = exp2f(p[D] - M);
      L += p[D + 1] * f;
      O += p[d] * f;
    }
    out[d] = FromF<T>(L > 0.f ? O / L : 0.f);
  }
}

template <typename T, int kDPL, int kMaxG>
int LaunchPaged(const PagedAttentionArgs& a, cudaStream_t stream) {
  dim3 grid(a.nsplit, a.kvh, a.n_queries);
  const size_t smem = static_cast<size_t>(kWarps) * kMaxG * a.D * sizeof(float);
  PagedAttentionKernel<T, kDPL, kMaxG><<<grid, kWarps * 32, smem, stream>>>(a);
  if (a.nsplit > 1) {
    dim3 cgrid(a.nh, a.n_queries);
    PagedAttentionCombineKernel<T><<<cgrid, a.D < 32 ? 32 : (a.D > 256 ? 256 : a.D), 0, stream>>>(a);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int kDPL>
int DispatchG(const PagedAttentionArgs& a, cudaStream_t stream) {
  const int G = a.nh / a.kvh;
  if (G <= 1) return LaunchPaged<T, kDPL, 1>(a, stream);
  if (G <= 2) return LaunchPaged<T, kDPL, 2>(a, stream);
  if (G <= 4) return LaunchPaged<T, kDPL, 4>(a, stream);
  return LaunchPaged<T, kDPL, 8>(a, stream);
}

template <typename T>
int DispatchD(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.D <= 32) return DispatchG<T, 1>(a, stream);
  if (a.D <= 64) return DispatchG<T, 2>(a, stream);
  if (a.D <= 128) return DispatchG<T, 4>(a, stream);
  return DispatchG<T, 8>(a, stream);
}

int Blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

}  // namespace

int AddRmsNorm(DType dt, void* x, const void* delta, const void* w, void* out, int64_t rows,
               int64_t H, float eps, cudaStream_t stream) {
  if (rows == 0) return 0;
  constexpr int kThreads = 256;
  const size_t smem = static_cast<size_t>(H) * sizeof(float);
  const int h = static_cast<int>(H);
  switch (dt) {
    case DType::kF32:
      AddRmsNormKernel<float, kThreads><<<rows, kThreads, smem, stream>>>(
          static_cast<float*>(x), static_cast<const float*>(delta), static_cast<const float*>(w),
          static_cast<float*>(out), h, eps);
      break;
    case DType::kF16:
      AddRmsNormKernel<__half, kThreads><<<rows, kThreads, smem, stream>>>(
          static_cast<__half*>(x), static_cast<const __half*>(delta), static_cast<const __half*>(w),
          static_cast<__half*>(out), h, eps);
      break;
    case DType::kBF16:
      AddRmsNormKernel<__nv_bfloat16, kThreads><<<rows, kThreads, smem, stream>>>(
          static_cast<__nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(delta),
          static_cast<const __nv_bfloat16*>(w), static_cast<__nv_bfloat16*>(out), h, eps);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

int RopeKvWrite(DType dt, void* qkv, int64_t ld, const int32_t* pos, const int32_t* slots,
                const float* inv_freq, void* k_cache, void* v_cache, int64_t rows, int nh,
                int kvh, int D, cudaStream_t stream) {
  if (rows == 0) return 0;
  const int threads = 256;
  switch (dt) {
    case DType::kF32:
      RopeKvWriteKernel<float><<<rows, threads, 0, stream>>>(
          static_cast<float*>(qkv), ld, pos, slots, inv_freq, static_cast<float*>(k_cache),
          static_cast<float*>(v_cache), nh, kvh, D);
      break;
    case DType::kF16:
      RopeKvWriteKernel<__half><<<rows, threads, 0, stream>>>(
          static_cast<__half*>(qkv), ld, pos, slots, inv_freq, static_cast<__half*>(k_cache),
          static_cast<__half*>(v_cache), nh, kvh, D);
      break;
    case DType::kBF16:
      RopeKvWriteKernel<__nv_bfloat16><<<rows, threads, 0, stream>>>(
          static_cast<__nv_bfloat16*>(qkv), ld, pos, slots, inv_freq,
          static_cast<__nv_bfloat16*>(k_cache), static_cast<__nv_bfloat16*>(v_cache), nh, kvh, D);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

int SiluMul(DType dt, const void* gu, void* out, int64_t rows, int64_t I, cudaStream_t stream) {
  if (rows == 0) return 0;
  const int threads = 256;
  const int blocks = Blocks(rows * I, threads);
  switch (dt) {
    case DType::kF32:
      SiluMulKernel<float><<<blocks, threads, 0, stream>>>(static_cast<const float*>(gu),
                                                           static_cast<float*>(out), rows, I);
      break;
    case DType::kF16:
      SiluMulKernel<__half><<<blocks, threads, 0, stream>>>(static_cast<const __half*>(gu),
                                                            static_cast<__half*>(out), rows, I);
      break;
    case DType::kBF16:
      SiluMulKernel<__nv_bfloat16><<<blocks, threads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(out), rows, I);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

bool PagedAttentionSupported(int nh, int kvh, int D) {
  const int dims_per_lane = D <= 32 ? 1 : (D <= 64 ? 2 : (D <= 128 ? 4 : 8));
  return kvh > 0 && nh % kvh == 0 && nh / kvh <= 8 && D > 0 && D <= 256 && D % 2 == 0 &&
         D % dims_per_lane == 0;
}

int PagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.n_queries == 0) return 0;
  if (a.n_queries > 65535 || a.nsplit < 1 || a.nsplit > 65535 ||
      !PagedAttentionSupported(a.nh, a.kvh, a.D))
    return static_cast<int>(cudaErrorInvalidValue);
  switch (a.dt) {
    case DType::kF32: return DispatchD<float>(a, stream);
    case DType::kF16: return DispatchD<__half>(a, stream);
    case DType::kBF16: return DispatchD<__nv_bfloat16>(a, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace r1::model::cuda
