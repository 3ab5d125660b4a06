// CUDA kernels for the Qwen2 step; see kernels.h for what each computes and the layouts.
// Arithmetic is float32 inside; values are rounded to the model's dtype where transformers
// rounds them (one bf16 op after another), so bf16 results stay within bf16 noise of it.
#include "worker/model/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdlib>
#include <cstring>
#include <utility>
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

// The sum over the block; every thread gets it. Safe to call again (it syncs first).
template <int kThreads>
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  __syncthreads();
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


// --- programmatic dependent launch (Hopper) --------------------------------------------------
//
// Every kernel here is launched with programmatic stream serialisation where the GPU has it
// (compute capability 9+; R1_PDL=0 turns it off): the next kernel in the stream may start while
// this one finishes. Each kernel therefore waits (GridDepWait) for the kernels before it to
// complete before it reads their outputs or writes anything, and lets the next one launch early
// (GridDepLaunch). Before its wait a kernel may only read data no kernel writes (the weights).

__device__ __forceinline__ void GridDepWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void GridDepLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

bool PdlEnabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("R1_PDL");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
      return false;
    return major >= 9;
  }();
  return enabled;
}

template <typename... KArgs, typename... Args>
cudaError_t Launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = PdlEnabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// --- residual add + RMSNorm ----------------------------------------------------------------

template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads) AddRmsNormKernel(T* __restrict__ x,
                                                            const T* __restrict__ delta,
                                                            const T* __restrict__ w,
                                                            T* __restrict__ out, int H, float eps) {
  GridDepWait();
  GridDepLaunch();
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
  GridDepWait();
  GridDepLaunch();
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
  GridDepWait();
  GridDepLaunch();
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
// Each warp takes runs of kKeys keys (1, or 4: see AttentionKeys): it loads all their key and
// value rows first, then for each key computes kMaxG dot products reduced across the warp and
// an online-softmax update. The warps' partial results are merged through
// shared memory. With several splits, each block writes its unnormalised part and the last block
// of a (query, kv head) to finish merges them (a counter per pair, reset by that block).

constexpr int kWarps = 4;

template <typename T, int kDPL, int kMaxG, int kKeys>
__global__ void __launch_bounds__(kWarps * 32)
    PagedAttentionKernel(PagedAttentionArgs a) {
  GridDepWait();
  GridDepLaunch();
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

  for (int j0 = start + warp * kKeys; j0 < end; j0 += kWarps * kKeys) {
    float k[kKeys][kDPL], v[kKeys][kDPL];
#pragma unroll
    for (int i = 0; i < kKeys; ++i) {
      const int j = j0 + i;
      if (j < end && lane_on) {
        const int64_t slot =
            static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
        const int64_t off = (slot * a.kvh + kh) * D + d0;
        LoadVec<T, kDPL>(kc + off, k[i]);
        LoadVec<T, kDPL>(vc + off, v[i]);
      } else {
#pragma unroll
        for (int e = 0; e < kDPL; ++e) k[i][e] = v[i][e] = 0.f;
      }
    }
#pragma unroll
    for (int i = 0; i < kKeys; ++i) {
      if (j0 + i >= end) break;
      float s[kMaxG];
#pragma unroll
      for (int g = 0; g < kMaxG; ++g) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < kDPL; ++e) dot += q[g][e] * k[i][e];
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
        for (int e = 0; e < kDPL; ++e) acc[g][e] = acc[g][e] * alpha + p * v[i][e];
        m[g] = m_new;
      }
    }
  }

  // Merge the warps: each writes (m, l, acc) to shared memory, then the block combines them.
  __shared__ float sm_m[kWarps][kMaxG], sm_l[kWarps][kMaxG];
  __shared__ bool last_block;
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
  T* out = static_cast<T*>(a.out) + static_cast<int64_t>(a.q_rows[b]) * a.out_ld;
  // partial layout: [query][head][split][D + 2] = acc..., m, l (unnormalised).
  auto part = [&](int h, int sp) {
    return a.partial + ((static_cast<int64_t>(b) * a.nh + h) * a.nsplit + sp) * (D + 2);
  };
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
      out[h * D + d] = FromF<T>(L > 0.f ? O / L : 0.f);
    } else {
      float* p = part(h, split);
      p[d] = O;
      if (d == 0) {
        p[D] = M;
        p[D + 1] = L;
      }
    }
  }
  if (a.nsplit == 1) return;
  // The last block of this (query, kv head) to finish merges the splits.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = a.counters + static_cast<int64_t>(b) * a.kvh + kh;
    last_block = atomicAdd(counter, 1) == a.nsplit - 1;
    if (last_block) *counter = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int i = threadIdx.x; i < G * D; i += kWarps * 32) {
    const int g = i / D, d = i - g * D, h = kh * G + g;
    float M = -FLT_MAX;
    for (int sp = 0; sp < a.nsplit; ++sp) M = fmaxf(M, __ldcg(part(h, sp) + D));
    float L = 0.f, O = 0.f;
    for (int sp = 0; sp < a.nsplit; ++sp) {
      const float* p = part(h, sp);
      const float f = exp2f(__ldcg(p + D) - M);
      L += __ldcg(p + D + 1) * f;
      O += __ldcg(p + d) * f;
    }
    out[h * D + d] = FromF<T>(L > 0.f ? O / L : 0.f);
  }
}

// Keys a warp loads before it uses them, when PagedAttentionArgs::keys is 0: 1, or
// R1_ATTN_KEYS=4. On the H100 one key at a time was faster: batch 256 (128 keys) 4.84 ms a
// step against 6.19 with 4; batch 1 2.56 against 2.60.
int AttentionKeys() {
  static const int keys = [] {
    const char* env = std::getenv("R1_ATTN_KEYS");
    return env != nullptr && std::atoi(env) == 4 ? 4 : 1;
  }();
  return keys;
}

template <typename T, int kDPL, int kMaxG>
int LaunchPaged(const PagedAttentionArgs& a, cudaStream_t stream) {
  dim3 grid(a.nsplit, a.kvh, a.n_queries);
  const size_t smem = static_cast<size_t>(kWarps) * kMaxG * a.D * sizeof(float);
  const int keys = a.keys > 0 ? a.keys : AttentionKeys();
  auto kernel = keys == 4 ? PagedAttentionKernel<T, kDPL, kMaxG, 4>
                          : PagedAttentionKernel<T, kDPL, kMaxG, 1>;
  return static_cast<int>(Launch(kernel, grid, dim3(kWarps * 32), smem, stream, a));
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


// --- GEMV with fused norm prologue and epilogues -------------------------------------------
//
// A block of kGemvThreads threads stages the M rows of x (normalised when asked) in shared
// memory as T, then each warp computes `units` outputs: for each, the warp streams the W row(s)
// with 16-byte loads (kUnroll of them in flight per lane), multiplies with every staged row, and
// reduces across the warp; lane 0 applies the epilogue.

constexpr int kGemvThreads = 256;
constexpr int kGemvUnroll = 8;
constexpr int kGemvMaxSmem = 160 * 1024;

template <typename T>
__device__ __forceinline__ uint4 LoadStreaming(const T* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}

template <typename T, int kVec>
__device__ __forceinline__ void Unpack(const uint4& raw, float (&out)[kVec]) {
  T vals[kVec];
  memcpy(vals, &raw, sizeof(raw));
#pragma unroll
  for (int i = 0; i < kVec; ++i) out[i] = ToF(vals[i]);
}

template <typename T, int kM, GemvOut kMode>
__global__ void __launch_bounds__(kGemvThreads) GemvKernel(GemvArgs a, int units) {
  extern __shared__ __align__(16) unsigned char gemv_smem[];
  T* xs = reinterpret_cast<T*>(gemv_smem);  // [M][K]
  __shared__ float row_scale[kM];
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kPairs = kMode == GemvOut::kSiluMul ? 2 : 1;
  constexpr int kStride = 32 * kVec;  // elements one warp-wide load covers
  const int K = a.K, M = a.M, tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const T* W = static_cast<const T*>(a.w);
  const int64_t n_first = (static_cast<int64_t>(blockIdx.x) * (kGemvThreads / 32) + warp) * units;
  auto row_of = [&](int64_t n, int r) { return W + (r == 0 ? n : a.N + n) * K; };

  // The first chunk of this warp's first rows, loaded before waiting for the previous kernel:
  // the weights are never written, so their reading overlaps that kernel's tail.
  uint4 pre[kPairs][kGemvUnroll];
  if (n_first < a.N) {
#pragma unroll
    for (int r = 0; r < kPairs; ++r)
#pragma unroll
      for (int i = 0; i < kGemvUnroll; ++i) {
        const int k = lane * kVec + i * kStride;
        if (k < K) pre[r][i] = LoadStreaming(row_of(n_first, r) + k);
      }
  }
  GridDepWait();
  GridDepLaunch();

  const T* x = static_cast<const T*>(a.x);
  if (a.norm_w != nullptr) {
    const T* nw = static_cast<const T*>(a.norm_w);
    for (int m = 0; m < M; ++m) {
      float ss = 0.f;
      for (int k = tid; k < K; k += kGemvThreads) {
        const float v = ToF(x[m * a.ldx + k]);
        ss += v * v;
      }
      ss = BlockSum<kGemvThreads>(ss);
      if (tid == 0) row_scale[m] = rsqrtf(ss / static_cast<float>(K) + a.eps);
    }
    __syncthreads();
    for (int i = tid; i < M * K; i += kGemvThreads) {
      const int m = i / K, k = i - m * K;
      xs[i] = FromF<T>(ToF(nw[k]) * Round<T>(ToF(x[m * a.ldx + k]) * row_scale[m]));
    }
  } else {
    for (int i = tid; i < M * K; i += kGemvThreads) {
      const int m = i / K, k = i - m * K;
      xs[i] = x[m * a.ldx + k];
    }
  }
  __syncthreads();

  float acc[kPairs][kM];
  // acc += the chunk wv (kGemvUnroll warp-wide loads from k0) times every staged row.
  auto consume = [&](const uint4 (&wv)[kPairs][kGemvUnroll], int k0) {
#pragma unroll
    for (int i = 0; i < kGemvUnroll; ++i) {
      const int k = k0 + i * kStride;
      if (k >= K) break;
      float wf[kPairs][kVec];
#pragma unroll
      for (int r = 0; r < kPairs; ++r) Unpack<T, kVec>(wv[r][i], wf[r]);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        if (m >= M) break;
        float xf[kVec];
        Unpack<T, kVec>(*reinterpret_cast<const uint4*>(xs + m * K + k), xf);
#pragma unroll
        for (int r = 0; r < kPairs; ++r)
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[r][m] += wf[r][e] * xf[e];
      }
    }
  };
  for (int u = 0; u < units; ++u) {
    const int64_t n = n_first + u;
    if (n >= a.N) break;
#pragma unroll
    for (int r = 0; r < kPairs; ++r)
#pragma unroll
      for (int m = 0; m < kM; ++m) acc[r][m] = 0.f;
    int k0 = lane * kVec;
    if (u == 0) {
      consume(pre, k0);
      k0 += kStride * kGemvUnroll;
    }
    for (; k0 < K; k0 += kStride * kGemvUnroll) {
      uint4 wv[kPairs][kGemvUnroll];
#pragma unroll
      for (int r = 0; r < kPairs; ++r)
#pragma unroll
        for (int i = 0; i < kGemvUnroll; ++i) {
          const int k = k0 + i * kStride;
          if (k < K) wv[r][i] = LoadStreaming(row_of(n, r) + k);
        }
      consume(wv, k0);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
      for (int r = 0; r < kPairs; ++r)
#pragma unroll
        for (int m = 0; m < kM; ++m) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
    if (lane < M) {
      // Lane m writes row m (an unrolled select keeps acc in registers).
      float v0 = 0.f, v1 = 0.f;
#pragma unroll
      for (int m = 0; m < kM; ++m)
        if (m == lane) {
          v0 = acc[0][m];
          v1 = acc[kPairs - 1][m];
        }
      const int64_t at = lane * a.ldy + n;
      if constexpr (kMode == GemvOut::kStore) {
        const float b = a.bias != nullptr ? ToF(static_cast<const T*>(a.bias)[n]) : 0.f;
        static_cast<T*>(a.y)[at] = FromF<T>(v0 + b);
      } else if constexpr (kMode == GemvOut::kStoreF32) {
        const float b = a.bias != nullptr ? ToF(static_cast<const T*>(a.bias)[n]) : 0.f;
        static_cast<float*>(a.y)[at] = Round<T>(v0 + b);
      } else if constexpr (kMode == GemvOut::kResidual) {
        T* y = static_cast<T*>(a.y);
        y[at] = FromF<T>(ToF(y[at]) + Round<T>(v0));
      } else {
        const float g = Round<T>(v0), up = Round<T>(v1);
        const float s = Round<T>(g / (1.f + expf(-g)));
        static_cast<T*>(a.y)[at] = FromF<T>(s * up);
      }
    }
  }
}

template <typename T, int kM, GemvOut kMode>
int LaunchGemv(const GemvArgs& a, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(a.M) * a.K * sizeof(T);
  auto kernel = GemvKernel<T, kM, kMode>;
  static bool raised = false;  // allow more than 48 KiB of dynamic shared memory, once
  if (!raised) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kGemvMaxSmem);
    if (e != cudaSuccess) return static_cast<int>(e);
    raised = true;
  }
  // Large N (the vocabulary): several outputs per warp, so fewer blocks re-stage x.
  const int units = a.units > 0 ? a.units : (a.N >= 65536 ? 8 : 1);
  const int64_t per_block = static_cast<int64_t>(kGemvThreads / 32) * units;
  const int64_t blocks = (a.N + per_block - 1) / per_block;
  return static_cast<int>(Launch(GemvKernel<T, kM, kMode>, dim3(static_cast<unsigned>(blocks)),
                                 dim3(kGemvThreads), smem, stream, a, units));
}

template <typename T, GemvOut kMode>
int GemvRows(const GemvArgs& a, cudaStream_t stream) {
  if (a.M <= 1) return LaunchGemv<T, 1, kMode>(a, stream);
  if (a.M <= 2) return LaunchGemv<T, 2, kMode>(a, stream);
  if (a.M <= 4) return LaunchGemv<T, 4, kMode>(a, stream);
  return LaunchGemv<T, 8, kMode>(a, stream);
}

template <typename T>
int GemvMode(const GemvArgs& a, cudaStream_t stream) {
  switch (a.mode) {
    case GemvOut::kStore: return GemvRows<T, GemvOut::kStore>(a, stream);
    case GemvOut::kResidual: return GemvRows<T, GemvOut::kResidual>(a, stream);
    case GemvOut::kSiluMul: return GemvRows<T, GemvOut::kSiluMul>(a, stream);
    case GemvOut::kStoreF32: return GemvRows<T, GemvOut::kStoreF32>(a, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

size_t ElementSize(DType dt) { return dt == DType::kF32 ? 4 : 2; }

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
  cudaError_t rc = cudaErrorInvalidValue;
  switch (dt) {
    case DType::kF32:
      rc = Launch(AddRmsNormKernel<float, kThreads>, dim3(static_cast<unsigned>(rows)), dim3(kThreads), smem, stream,
          static_cast<float*>(x), static_cast<const float*>(delta), static_cast<const float*>(w),
          static_cast<float*>(out), h, eps);
      break;
    case DType::kF16:
      rc = Launch(AddRmsNormKernel<__half, kThreads>, dim3(static_cast<unsigned>(rows)), dim3(kThreads), smem, stream,
          static_cast<__half*>(x), static_cast<const __half*>(delta), static_cast<const __half*>(w),
          static_cast<__half*>(out), h, eps);
      break;
    case DType::kBF16:
      rc = Launch(AddRmsNormKernel<__nv_bfloat16, kThreads>, dim3(static_cast<unsigned>(rows)), dim3(kThreads), smem, stream,
          static_cast<__nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(delta),
          static_cast<const __nv_bfloat16*>(w), static_cast<__nv_bfloat16*>(out), h, eps);
      break;
  }
  return static_cast<int>(rc);
}

int RopeKvWrite(DType dt, void* qkv, int64_t ld, const int32_t* pos, const int32_t* slots,
                const float* inv_freq, void* k_cache, void* v_cache, int64_t rows, int nh,
                int kvh, int D, cudaStream_t stream) {
  if (rows == 0) return 0;
  const int threads = 256;
  cudaError_t rc = cudaErrorInvalidValue;
  switch (dt) {
    case DType::kF32:
      rc = Launch(RopeKvWriteKernel<float>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, stream,
          static_cast<float*>(qkv), ld, pos, slots, inv_freq, static_cast<float*>(k_cache),
          static_cast<float*>(v_cache), nh, kvh, D);
      break;
    case DType::kF16:
      rc = Launch(RopeKvWriteKernel<__half>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, stream,
          static_cast<__half*>(qkv), ld, pos, slots, inv_freq, static_cast<__half*>(k_cache),
          static_cast<__half*>(v_cache), nh, kvh, D);
      break;
    case DType::kBF16:
      rc = Launch(RopeKvWriteKernel<__nv_bfloat16>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, stream,
          static_cast<__nv_bfloat16*>(qkv), ld, pos, slots, inv_freq,
          static_cast<__nv_bfloat16*>(k_cache), static_cast<__nv_bfloat16*>(v_cache), nh, kvh, D);
      break;
  }
  return static_cast<int>(rc);
}

int SiluMul(DType dt, const void* gu, void* out, int64_t rows, int64_t I, cudaStream_t stream) {
  if (rows == 0) return 0;
  const int threads = 256;
  const int blocks = Blocks(rows * I, threads);
  cudaError_t rc = cudaErrorInvalidValue;
  switch (dt) {
    case DType::kF32:
      rc = Launch(SiluMulKernel<float>, dim3(blocks), dim3(threads), 0, stream, static_cast<const float*>(gu),
                                                           static_cast<float*>(out), rows, I);
      break;
    case DType::kF16:
      rc = Launch(SiluMulKernel<__half>, dim3(blocks), dim3(threads), 0, stream, static_cast<const __half*>(gu),
                                                            static_cast<__half*>(out), rows, I);
      break;
    case DType::kBF16:
      rc = Launch(SiluMulKernel<__nv_bfloat16>, dim3(blocks), dim3(threads), 0, stream,
          static_cast<const __nv_bfloat16*>(gu), static_cast<__nv_bfloat16*>(out), rows, I);
      break;
  }
  return static_cast<int>(rc);
}

bool PagedAttentionSupported(int nh, int kvh, int D) {
  const int dims_per_lane = D <= 32 ? 1 : (D <= 64 ? 2 : (D <= 128 ? 4 : 8));
  return kvh > 0 && nh % kvh == 0 && nh / kvh <= 8 && D > 0 && D <= 256 && D % 2 == 0 &&
         D % dims_per_lane == 0;
}

int PagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.n_queries == 0) return 0;
  if (a.n_queries > 65535 || a.nsplit < 1 || a.nsplit > 65535 ||
      !PagedAttentionSupported(a.nh, a.kvh, a.D) ||
      (a.nsplit > 1 && (a.partial == nullptr || a.counters == nullptr)) ||
      (a.keys != 0 && a.keys != 1 && a.keys != 4))
    return static_cast<int>(cudaErrorInvalidValue);
  switch (a.dt) {
    case DType::kF32: return DispatchD<float>(a, stream);
    case DType::kF16: return DispatchD<__half>(a, stream);
    case DType::kBF16: return DispatchD<__nv_bfloat16>(a, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

bool GemvSupported(DType dt, int M, int K) {
  const size_t es = ElementSize(dt);
  return M >= 1 && M <= kGemvMaxRows && K > 0 && (K * es) % 16 == 0 &&
         static_cast<size_t>(M) * K * es <= static_cast<size_t>(kGemvMaxSmem);
}

int Gemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.N == 0) return 0;
  if (!GemvSupported(a.dt, a.M, a.K) || (a.ldx * ElementSize(a.dt)) % 16 != 0)
    return static_cast<int>(cudaErrorInvalidValue);
  switch (a.dt) {
    case DType::kF32: return GemvMode<float>(a, stream);
    case DType::kF16: return GemvMode<__half>(a, stream);
    case DType::kBF16: return GemvMode<__nv_bfloat16>(a, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace r1::model::cuda
