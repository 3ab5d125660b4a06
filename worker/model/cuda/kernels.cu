// CUDA kernels for the Qwen2 step; see kernels.h for what each computes and the layouts.
// Arithmetic is float32 inside; values are rounded to the model's dtype where transformers
// rounds them (one bf16 op after another), so bf16 results stay within bf16 noise of it.
#include "worker/model/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

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

// The sum (kMax: the maximum) over the block; every thread gets it. Safe to call again (it
// syncs first).
template <int kThreads, bool kMax = false>
__device__ __forceinline__ float BlockReduce(float v) {
  __shared__ float per_warp[kThreads / 32];
  auto op = [](float a, float b) { return kMax ? fmaxf(a, b) : a + b; };
  __syncthreads();
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) per_warp[warp] = v;
  __syncthreads();
  float r = per_warp[0];
#pragma unroll
  for (int i = 1; i < kThreads / 32; ++i) r = op(r, per_warp[i]);
  return r;
}
template <int kThreads>
__device__ __forceinline__ float BlockSum(float v) {
  return BlockReduce<kThreads>(v);
}
template <int kThreads>
__device__ __forceinline__ float BlockMax(float v) {
  return BlockReduce<kThreads, true>(v);
}

// --- programmatic dependent launch (Hopper) --------------------------------------------------
//
// Every kernel here is launched with programmatic stream serialisation where the GPU has it
// (compute capability 9+; SetProgrammaticLaunch(false) turns it off): the next kernel in the stream may start while
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

std::atomic<bool> g_pdl{true};

bool PdlEnabled() {
  static const bool capable = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
      return false;
    return major >= 9;
  }();
  return capable && g_pdl.load(std::memory_order_relaxed);
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

// Lets kKernel use `bytes` of dynamic shared memory (past the 48 KiB default): set once per
// kernel; a failure is returned, and tried again at the next call.
template <auto kKernel>
cudaError_t AllowDynamicSmem(int bytes) {
  static std::atomic<bool> done{false};
  if (done.load(std::memory_order_acquire)) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) done.store(true, std::memory_order_release);
  return e;
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

// --- FP8 (e4m3) helpers --------------------------------------------------------------------

constexpr float kFp8Max = 448.f;  // the largest finite e4m3 value

__device__ __forceinline__ uint8_t ToFp8(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}
// A row with largest magnitude amax is stored as e4m3(v * Fp8Inverse(amax)) with the scale
// amax / 448 (a zero row: zeros, scale 0).
__device__ __forceinline__ float Fp8Inverse(float amax) { return amax > 0.f ? kFp8Max / amax : 0.f; }
__device__ __forceinline__ float FromFp8(uint8_t v) {
  __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(v), __NV_E4M3);
  return __half2float(__half(h));
}

// Stores one D-wide head row (src, spread over a warp: lane l takes elements l, l + 32, ...) as
// e4m3 at dst, with the row's scale (largest magnitude / 448) at *scale.
template <typename T>
__device__ __forceinline__ void StoreFp8Row(const T* src, int D, uint8_t* dst, float* scale, int lane) {
  float amax = 0.f;
  for (int i = lane; i < D; i += 32) amax = fmaxf(amax, fabsf(ToF(src[i])));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float inv = Fp8Inverse(amax);
  for (int i = lane; i < D; i += 32) dst[i] = ToFp8(ToF(src[i]) * inv);
  if (lane == 0) *scale = amax / kFp8Max;
}

// --- FP8 rows (QuantizeFp8Rows) --------------------------------------------------------------

// One block per row; `vec`: K, ldx and ldq multiples of 8 and the pointers aligned, so each
// thread reads 8 values at once and writes 8 bytes.
template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads) QuantizeFp8RowsKernel(const T* __restrict__ x, int64_t ldx,
                                                                 int64_t K, uint8_t* __restrict__ q,
                                                                 int64_t ldq, float* __restrict__ scale,
                                                                 bool vec) {
  GridDepWait();
  GridDepLaunch();
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * ldx;
  uint8_t* qr = q + static_cast<int64_t>(blockIdx.x) * ldq;
  float amax = 0.f;
  if (vec) {
    for (int64_t k = threadIdx.x * 8; k < K; k += kThreads * 8) {
      float v[8];
      LoadVec<T, 8>(xr + k, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(v[e]));
    }
  } else {
    for (int64_t k = threadIdx.x; k < K; k += kThreads) amax = fmaxf(amax, fabsf(ToF(xr[k])));
  }
  amax = BlockMax<kThreads>(amax);
  const float inv = Fp8Inverse(amax);
  if (vec) {
    for (int64_t k = threadIdx.x * 8; k < K; k += kThreads * 8) {
      float v[8];
      LoadVec<T, 8>(xr + k, v);
      uint8_t b[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) b[e] = ToFp8(v[e] * inv);
      uint2 packed;
      memcpy(&packed, b, 8);
      *reinterpret_cast<uint2*>(qr + k) = packed;
    }
  } else {
    for (int64_t k = threadIdx.x; k < K; k += kThreads) qr[k] = ToFp8(ToF(xr[k]) * inv);
  }
  if (threadIdx.x == 0) scale[blockIdx.x] = amax / kFp8Max;
}

// --- RoPE + KV-cache write -----------------------------------------------------------------

// Rotate-half RoPE of one pair (x1, x2) = (x[j], x[j + D / 2]) at position pos, each op rounded to
// T as transformers' bf16/f16 ops round them: q * cos + rotate_half(q) * sin, rotate_half(q) =
// [-x2, x1]. RopeKvWrite and the qkv GEMV's kRopeKv epilogue share it, so the two paths agree bit
// for bit.
template <typename T>
__device__ __forceinline__ void RotateHalfPair(float x1, float x2, float pos, float inv_freq, T* y1, T* y2) {
  const float f = pos * inv_freq;
  const float c = Round<T>(cosf(f)), s = Round<T>(sinf(f));
  *y1 = FromF<T>(Round<T>(x1 * c) + Round<T>(-x2 * s));
  *y2 = FromF<T>(Round<T>(x2 * c) + Round<T>(x1 * s));
}

template <typename T>
__global__ void RopeKvWriteKernel(RopeKvArgs a) {
  GridDepWait();
  GridDepLaunch();
  const int t = blockIdx.x;
  const int nh = a.nh, kvh = a.kvh, D = a.D, half = D / 2;
  const float p = static_cast<float>(a.pos[t]);
  const int64_t slot = a.slots[t];
  T* row = static_cast<T*>(a.qkv) + static_cast<int64_t>(t) * a.ld;
  T* kc = static_cast<T*>(a.k_cache);
  T* vc = static_cast<T*>(a.v_cache);
  const int pairs = (nh + kvh) * half;
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    const int h = i / half, j = i - h * half;
    T* head = row + h * D;
    T y1, y2;
    RotateHalfPair<T>(ToF(head[j]), ToF(head[j + half]), p, a.inv_freq[j], &y1, &y2);
    head[j] = y1;
    head[j + half] = y2;
    if (h >= nh && !a.fp8_cache) {
      T* dst = kc + (slot * kvh + (h - nh)) * D;
      dst[j] = y1;
      dst[j + half] = y2;
    }
  }
  const T* v = row + (nh + kvh) * D;
  if (!a.fp8_cache) {
    T* vdst = vc + slot * kvh * D;
    for (int i = threadIdx.x; i < kvh * D; i += blockDim.x) vdst[i] = v[i];
    return;
  }
  // FP8: one warp per (K or V, kv head) row, once every rotated k is in the row.
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int r = warp; r < 2 * kvh; r += warps) {
    const bool is_v = r >= kvh;
    const int h = is_v ? r - kvh : r;
    const T* src = is_v ? v + h * D : row + (nh + h) * D;
    uint8_t* base = static_cast<uint8_t*>(is_v ? a.v_cache : a.k_cache);
    float* scale = (is_v ? a.v_scale : a.k_scale) + slot * kvh + h;
    StoreFp8Row<T>(src, D, base + (slot * kvh + h) * D, scale, lane);
  }
}

// --- K/V gather for flash attention ----------------------------------------------------------

// One thread per 8 values of one (row, kv head): a 16-byte store.
template <typename T>
__global__ void GatherKvKernel(GatherKvArgs a) {
  GridDepWait();
  GridDepLaunch();
  const int64_t per_row = static_cast<int64_t>(a.kvh) * a.D / 8;
  const int64_t total = a.n * per_row * 2;  // K and V
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool is_v = i >= a.n * per_row;
    const int64_t j = is_v ? i - a.n * per_row : i;
    const int64_t r = j / per_row, c = j - r * per_row;  // row, 8-value chunk within it
    const int64_t slot = a.slots[r];
    T* dst = static_cast<T*>(is_v ? a.v_out : a.k_out) + r * per_row * 8 + c * 8;
    if (!a.fp8_cache) {
      const T* src = static_cast<const T*>(is_v ? a.v_cache : a.k_cache) + slot * per_row * 8 + c * 8;
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      continue;
    }
    const uint8_t* src = static_cast<const uint8_t*>(is_v ? a.v_cache : a.k_cache) + slot * per_row * 8 + c * 8;
    const int head = static_cast<int>(c * 8 / a.D);
    const float scale = (is_v ? a.v_scale : a.k_scale)[slot * a.kvh + head];
    uint2 raw = *reinterpret_cast<const uint2*>(src);
    uint8_t bytes[8];
    memcpy(bytes, &raw, 8);
    T out[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = FromF<T>(FromFp8(bytes[e]) * scale);
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(out);
  }
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
// Two kernels share one ending (FinishSplit) and a grid over (split, kv head, query) (the
// tensor-core one orders it (kv head, split, query)): each
// block attends one query's heads of one kv head's group over one split of its keys, and ends
// with its unnormalised result (max M, sum L, output O per head). With one split it writes
// the output; with several it writes its part, and MergeSplitsKernel, launched after it, merges
// the parts of each (query, head) in a block of its own.

// The block's result, in shared memory: fin_m / fin_l per head of the group, o[g * ostride + d].
template <typename T>
__device__ __forceinline__ void FinishSplit(const PagedAttentionArgs& a, int b, int kh, int split,
                                            int G, const float* fin_m, const float* fin_l,
                                            const float* o, int ostride) {
  const int D = a.D;
  T* out = static_cast<T*>(a.out) + static_cast<int64_t>(a.q_rows[b]) * a.out_ld;
  // partial layout: [query][head][split][D + 2] = acc..., m, l (unnormalised).
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i - g * D, h = kh * G + g;
    const float M = fin_m[g], L = fin_l[g], O = o[g * ostride + d];
    if (a.nsplit == 1) {
      out[h * D + d] = FromF<T>(L > 0.f ? O / L : 0.f);
    } else {
      float* p = a.partial + ((static_cast<int64_t>(b) * a.nh + h) * a.nsplit + split) * (D + 2);
      p[d] = O;
      if (d == 0) {
        p[D] = M;
        p[D + 1] = L;
      }
    }
  }
}

// The merge of the key splits: one block per (head, query). Warp 0 reads every split's m and l
// (lanes over the splits, all loads issued before any use) and turns them into the weights
// exp2(m - M); then each thread sums one dimension over a share of the splits (the block's
// 256 threads are 256 / D groups of D), sixteen loads in flight, and the groups' sums meet in
// shared memory. Every load is independent, so the merge costs a few round trips to L2 however
// many splits there are (a single block summing every head of a kv head's group, one split
// after another, cost a round trip per split and dimension: at 64 splits it took longer than
// the attention itself at batch 1).
constexpr int kMergeThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kMergeThreads) MergeSplitsKernel(PagedAttentionArgs a) {
  GridDepWait();
  GridDepLaunch();
  __shared__ float weight[kMaxAttentionSplits];
  __shared__ float sums[kMergeThreads];
  __shared__ float merged_l;
  const int h = blockIdx.x, b = blockIdx.y, D = a.D, S = a.nsplit, stride = D + 2;
  const float* base = a.partial + (static_cast<int64_t>(b) * a.nh + h) * S * stride;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    constexpr int kPer = kMaxAttentionSplits / 32;
    float m[kPer], l[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int sp = lane + 32 * i;
      m[i] = sp < S ? __ldcg(base + static_cast<int64_t>(sp) * stride + D) : -INFINITY;
      l[i] = sp < S ? __ldcg(base + static_cast<int64_t>(sp) * stride + D + 1) : 0.f;
    }
    float M = -INFINITY;
#pragma unroll
    for (int i = 0; i < kPer; ++i) M = fmaxf(M, m[i]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
    float L = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int sp = lane + 32 * i;
      const float f = m[i] == -INFINITY ? 0.f : exp2f(m[i] - M);  // 0 for a split that saw no key
      if (sp < S) weight[sp] = f;
      L += l[i] * f;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
    if (lane == 0) merged_l = L;
  }
  __syncthreads();
  const int groups = kMergeThreads / D, grp = threadIdx.x / D, d = threadIdx.x - grp * D;
  if (grp < groups) {
    const float* p = base + d;
    float O = 0.f;
    int sp = grp;
    constexpr int kLoads = 16;
    for (; sp + (kLoads - 1) * groups < S; sp += kLoads * groups) {
      float v[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; ++u) v[u] = __ldcg(p + static_cast<int64_t>(sp + u * groups) * stride);
#pragma unroll
      for (int u = 0; u < kLoads; ++u) O += v[u] * weight[sp + u * groups];
    }
    for (; sp < S; sp += groups) O += __ldcg(p + static_cast<int64_t>(sp) * stride) * weight[sp];
    sums[threadIdx.x] = O;
  }
  __syncthreads();
  if (threadIdx.x < D) {
    float O = 0.f;
    for (int g = 0; g < groups; ++g) O += sums[g * D + threadIdx.x];
    const float L = merged_l;
    T* out = static_cast<T*>(a.out) + static_cast<int64_t>(a.q_rows[b]) * a.out_ld;
    out[h * D + threadIdx.x] = FromF<T>(L > 0.f ? O / L : 0.f);
  }
}

template <typename T>
int LaunchMerge(const PagedAttentionArgs& a, cudaStream_t stream) {
  return static_cast<int>(Launch(MergeSplitsKernel<T>, dim3(a.nh, a.n_queries), dim3(kMergeThreads), 0, stream, a));
}

// The keys [start, end) of `split` when a query's `len` keys are cut into nsplit parts, each a
// whole number of `align` keys.
__device__ __forceinline__ void SplitRange(int len, int nsplit, int split, int align, int* start,
                                           int* end) {
  const int per = ((len + nsplit - 1) / nsplit + align - 1) / align * align;
  *start = min(len, split * per);
  *end = min(len, *start + per);
}

// The CUDA-core kernel: any head_dim up to 256, any dtype. kWarps warps; lane l of every warp
// holds dims [l * kDPL, (l + 1) * kDPL) of the query heads of this kv head's group (at most
// kMaxG of them). Each warp takes one key at a time: for each, kMaxG dot products reduced
// across the warp and an online-softmax update. The warps are merged through shared memory.

constexpr int kWarps = 4;

template <typename T, int kDPL, int kMaxG, bool kFp8>
__global__ void __launch_bounds__(kWarps * 32) PagedAttentionKernel(PagedAttentionArgs a) {
  GridDepWait();
  GridDepLaunch();
  const int split = blockIdx.x, kh = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int G = a.nh / a.kvh, D = a.D;
  int start, end;
  SplitRange(a.q_lens[b], a.nsplit, split, 1, &start, &end);
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
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < kDPL; ++e) acc[g][e] = 0.f;
  }

  for (int j = start + warp; j < end; j += kWarps) {
    float k[kDPL], v[kDPL];
    if (lane_on) {
      const int64_t slot = static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
      const int64_t off = (slot * a.kvh + kh) * D + d0;
      if constexpr (kFp8) {
        const uint8_t* kb = static_cast<const uint8_t*>(a.k_cache) + off;
        const uint8_t* vb = static_cast<const uint8_t*>(a.v_cache) + off;
        const float ks = a.k_scale[slot * a.kvh + kh], vs = a.v_scale[slot * a.kvh + kh];
#pragma unroll
        for (int e = 0; e < kDPL; ++e) {
          k[e] = FromFp8(kb[e]) * ks;
          v[e] = FromFp8(vb[e]) * vs;
        }
      } else {
        LoadVec<T, kDPL>(kc + off, k);
        LoadVec<T, kDPL>(vc + off, v);
      }
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
      const float alpha = exp2f(m[g] - m_new), p = exp2f(x - m_new);  // alpha 0 on the first key
      l[g] = l[g] * alpha + p;
#pragma unroll
      for (int e = 0; e < kDPL; ++e) acc[g][e] = acc[g][e] * alpha + p * v[e];
      m[g] = m_new;
    }
  }

  // Merge the warps: each writes (m, l, acc) to shared memory, then the block combines them.
  __shared__ float sm_m[kWarps][kMaxG], sm_l[kWarps][kMaxG], fin_m[kMaxG], fin_l[kMaxG];
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
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm_m[w][g]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = sm_m[w][g] == -INFINITY ? 0.f : exp2f(sm_m[w][g] - M);  // a warp that saw no key
      L += sm_l[w][g] * f;
      O += sm_acc[(w * kMaxG + g) * D + d] * f;
    }
    if (d == 0) {
      fin_m[g] = M;
      fin_l[g] = L;
    }
    sm_acc[g * D + d] = O;  // warp 0's slot; (g, d) has one owner
  }
  __syncthreads();
  FinishSplit<T>(a, b, kh, split, G, fin_m, fin_l, sm_acc, D);
}

template <typename T, int kDPL, int kMaxG>
int LaunchPaged(const PagedAttentionArgs& a, cudaStream_t stream) {
  dim3 grid(a.nsplit, a.kvh, a.n_queries);
  const size_t smem = static_cast<size_t>(kWarps) * kMaxG * a.D * sizeof(float);
  auto kernel = a.fp8_cache ? PagedAttentionKernel<T, kDPL, kMaxG, true> : PagedAttentionKernel<T, kDPL, kMaxG, false>;
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

// The tensor-core kernel: head_dim 128, bf16 or f16 (FP8 caches too), query groups of up to
// 16 heads. Flash-decoding over paged keys:
//   - the block's keys come in tiles of 64 (4 paged blocks of 16), copied global -> shared
//     with cp.async 16 bytes at a time, the next tile in flight while this one is used
//     (double buffering: 32 KiB of K and V in flight per block, three blocks per SM);
//   - each warp takes 16 keys of a tile: S = Q K^T for all the group's query heads at once with
//     mma.sync m16n8k16 (the group padded to 16 rows, so each KV head is read once for its
//     whole group), an online softmax in registers, then O += P V with mma.sync, V fed by
//     ldmatrix.trans; rows of shared memory are padded by 16 bytes so neither the 32-bit K
//     loads nor ldmatrix conflict on banks;
//   - FP8 caches: each tile is dequantized in shared memory first, to f16 whatever T is (e4m3
//     is exact in f16, and the conversion is one instruction per two values where bf16 would
//     take four), so the products run on f16 tensor cores: Q enters them pre-scaled by the
//     softmax scale (in f16 range with room to spare) and P in f16. The per-key scales come
//     with the tile's cp.async copies and multiply S (K's) and P (V's);
//   - the running output is rescaled only when a row's running maximum moved (rare after the
//     first tiles), and keys are masked only in a split's last, partial tile.
namespace tc {
constexpr int kD = 128;
constexpr int kTile = 64;
constexpr int kThreads = 128;
constexpr int kRow = kD + 8;                    // elements per shared row (16 bytes of padding)
constexpr int kTileBytes = kTile * kRow * 2;    // one K or V tile of T
constexpr int kFp8TileBytes = kTile * kD;       // one raw FP8 tile
// One stage of tiles in flight: K then V as T, or for FP8 the raw K and V tiles followed by
// their per-key scales (K's, then V's).
constexpr int StageBytes(bool fp8) { return fp8 ? 2 * kFp8TileBytes + 2 * kTile * 4 : 2 * kTileBytes; }
// Shared memory of a block with `stages` stages, and for FP8 one dequantized T tile of K and V.
constexpr size_t SmemBytes(bool fp8, int stages) {
  return stages * StageBytes(fp8) + (fp8 ? 2 * kTileBytes : 0);
}
}  // namespace tc

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 16 : 0));
}
// A 4-byte copy (one FP8 scale); zero-filled when !valid.
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

template <typename T>
__device__ __forceinline__ void Mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void Mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename T>
__device__ __forceinline__ uint32_t Pack2(float lo, float hi) {
  T v[2] = {FromF<T>(lo), FromF<T>(hi)};
  uint32_t r;
  memcpy(&r, v, 4);
  return r;
}

// a - b on two packed values of T (bf16 or f16), rounded as T.
template <typename T>
__device__ __forceinline__ uint32_t Sub2(uint32_t a, uint32_t b) {
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  T2 x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  const T2 d = __hsub2(x, y);
  uint32_t r;
  memcpy(&r, &d, 4);
  return r;
}

// Issues the copies of the K and V rows of keys [k0, k0 + 64) (zero-filled past `end`). Each
// thread copies one 16-byte column of a fixed set of keys, for K and V alike, so it looks each
// key's slot up once; with a power-of-two block size (block_shift >= 0) without a division.
// For FP8 the thread of column 0 also copies the key's two scales behind the tiles.
template <bool kFp8>
__device__ __forceinline__ void LoadTile(const PagedAttentionArgs& a, const int32_t* table, int kh,
                                         int k0, int end, unsigned char* stage, int block_shift) {
  constexpr int kElt = kFp8 ? 1 : 2;
  constexpr int kChunksPerRow = tc::kD * kElt / 16;         // 16 (bf16) or 8 (FP8)
  constexpr int kKeysPerPass = tc::kThreads / kChunksPerRow;  // 8 or 16
  constexpr int kRowBytes = kFp8 ? tc::kD : tc::kRow * 2;
  constexpr int kTileBytes = kFp8 ? tc::kFp8TileBytes : tc::kTileBytes;
  const int col = threadIdx.x % kChunksPerRow, key0 = threadIdx.x / kChunksPerRow;
  const unsigned char* kbase = static_cast<const unsigned char*>(a.k_cache) + (static_cast<int64_t>(kh) * tc::kD * kElt + col * 16);
  const unsigned char* vbase = static_cast<const unsigned char*>(a.v_cache) + (static_cast<int64_t>(kh) * tc::kD * kElt + col * 16);
  const int64_t row_stride = static_cast<int64_t>(a.kvh) * tc::kD * kElt;  // bytes per slot
#pragma unroll
  for (int i = 0; i < tc::kTile / kKeysPerPass; ++i) {
    const int key = key0 + i * kKeysPerPass;
    const int j = k0 + key;
    const bool valid = j < end;
    int64_t slot = 0;
    if (valid) {
      slot = block_shift >= 0
                 ? (static_cast<int64_t>(__ldg(table + (j >> block_shift))) << block_shift) + (j & ((1 << block_shift) - 1))
                 : static_cast<int64_t>(__ldg(table + j / a.block_size)) * a.block_size + j % a.block_size;
    }
    const int64_t off = slot * row_stride;
    unsigned char* dst = stage + key * kRowBytes + col * 16;
    CpAsync16(dst, kbase + off, valid);
    CpAsync16(dst + kTileBytes, vbase + off, valid);
    if constexpr (kFp8) {
      if (col == 0) {
        float* scales = reinterpret_cast<float*>(stage + 2 * kTileBytes);
        const int64_t si = slot * a.kvh + kh;
        CpAsync4(scales + key, a.k_scale + si, valid);
        CpAsync4(scales + tc::kTile + key, a.v_scale + si, valid);
      }
    }
  }
}

// Four e4m3 bytes (little-endian in `raw`) to four T values, exactly: two values per
// conversion instruction on sm_89+ (e4m3 -> f16 pairs; every e4m3 value is exact in f16 and
// bf16).
template <typename T>
__device__ __forceinline__ void Fp8x4ToT(uint32_t raw, T* out) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const __half2 v(__half2_raw(__nv_cvt_fp8x2_to_halfraw2(
        static_cast<__nv_fp8x2_storage_t>(raw >> (16 * h)), __NV_E4M3)));
    if constexpr (std::is_same_v<T, __half>) {
      out[2 * h] = __low2half(v);
      out[2 * h + 1] = __high2half(v);
    } else {
      const float2 f = __half22float2(v);
      out[2 * h] = FromF<T>(f.x);
      out[2 * h + 1] = FromF<T>(f.y);
    }
  }
}

template <typename T, bool kFp8, int kStages>
__global__ void __launch_bounds__(tc::kThreads) DecodeAttentionTcKernel(PagedAttentionArgs a) {
  using MT = std::conditional_t<kFp8, __half, T>;  // what the tensor cores multiply
  GridDepWait();
  GridDepLaunch();
  extern __shared__ __align__(16) unsigned char smem[];
  // The two KV heads' blocks of the same keys are neighbours in launch order, so they read the
  // two halves of each token's K/V rows at about the same time.
  const int kh = blockIdx.x, split = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  const int G = a.nh / a.kvh;
  int start, end;
  SplitRange(a.q_lens[b], a.nsplit, split, tc::kTile, &start, &end);
  const int32_t* table = a.tables + static_cast<int64_t>(a.q_seq[b]) * a.table_stride;
  const float scale_log2 = a.scale * 1.4426950408889634f;
  const int block_shift = (a.block_size & (a.block_size - 1)) == 0 ? __ffs(a.block_size) - 1 : -1;

  // The merge scratch aliases the tiles once they are used up.
  float* sm_o = reinterpret_cast<float*>(smem);  // [4 warps][16 rows][128]
  float* sm_m = sm_o + 4 * 16 * tc::kD;           // [4][16]
  float* sm_l = sm_m + 4 * 16;                    // [4][16]
  float* fin_m = sm_l + 4 * 16;                   // [16]
  float* fin_l = fin_m + 16;                      // [16]
  if (start >= end) {  // a split with no keys (rounding): an empty part for the merge
    for (int i = threadIdx.x; i < G * tc::kD; i += tc::kThreads) sm_o[i] = 0.f;
    if (threadIdx.x < G) {
      fin_m[threadIdx.x] = -INFINITY;
      fin_l[threadIdx.x] = 0.f;
    }
    __syncthreads();
    FinishSplit<T>(a, b, kh, split, G, fin_m, fin_l, sm_o, tc::kD);
    return;
  }

  // Q as mma A fragments: rows = the group's heads (padded to 16 with zeros), 8 chunks of 16 dims.
  // In MT: T itself, or for FP8 caches f16 times the softmax scale (which S then leaves out).
  const T* qrow = static_cast<const T*>(a.qkv) + static_cast<int64_t>(a.q_rows[b]) * a.ld +
                  static_cast<int64_t>(kh) * G * tc::kD;
  auto qpair = [&](int row, int d) -> uint32_t {
    if (row >= G) return 0u;
    const T* q = qrow + row * tc::kD + d;
    if constexpr (kFp8) return Pack2<MT>(ToF(q[0]) * a.scale, ToF(q[1]) * a.scale);
    return *reinterpret_cast<const uint32_t*>(q);
  };
  uint32_t qa[8][4];
#pragma unroll
  for (int kc = 0; kc < 8; ++kc) {
    const int d = kc * 16 + t4 * 2;
    qa[kc][0] = qpair(g, d);
    qa[kc][1] = qpair(g + 8, d);
    qa[kc][2] = qpair(g, d + 8);
    qa[kc][3] = qpair(g + 8, d + 8);
  }
  const float s_mul = kFp8 ? 1.4426950408889634f : scale_log2;  // S to log2 units
  float o[16][4];
#pragma unroll
  for (int n = 0; n < 16; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // rows g and g + 8

  constexpr int kStageBytes = tc::StageBytes(kFp8);
  const MT* Ks = reinterpret_cast<const MT*>(kFp8 ? smem + kStages * kStageBytes : smem);
  const int ntiles = (end - start + tc::kTile - 1) / tc::kTile;
  // kStages - 1 tiles in flight ahead of the one in use.
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < ntiles) LoadTile<kFp8>(a, table, kh, start + t * tc::kTile, end, smem + t * kStageBytes, block_shift);
    CpAsyncCommit();
  }
  for (int t = 0; t < ntiles; ++t) {
    const int k0 = start + t * tc::kTile;
    const int ahead = t + kStages - 1;
    if (ahead < ntiles) LoadTile<kFp8>(a, table, kh, start + ahead * tc::kTile, end, smem + (ahead % kStages) * kStageBytes, block_shift);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();
    __syncthreads();
    const unsigned char* stage = smem + (t % kStages) * kStageBytes;
    // FP8: this stage's per-key scales (copied with the tile).
    const float* sk = reinterpret_cast<const float*>(stage + 2 * tc::kFp8TileBytes);
    const float* sv = sk + tc::kTile;
    if constexpr (kFp8) {
      // Dequantize the raw tile into the T tile (values unscaled: e4m3 is exact in T), 16 bytes
      // a thread at a time.
      MT* dst = const_cast<MT*>(Ks);
      constexpr int kChunks = tc::kTile * tc::kD / 16;  // of one raw tile
      for (int c = threadIdx.x; c < 2 * kChunks; c += tc::kThreads) {
        const bool is_v = c >= kChunks;
        const int cc = is_v ? c - kChunks : c;
        const int key = cc / (tc::kD / 16), col = (cc % (tc::kD / 16)) * 16;
        const uint4 raw = *reinterpret_cast<const uint4*>(stage + (is_v ? tc::kFp8TileBytes : 0) + key * tc::kD + col);
        alignas(16) MT vals[16];
        Fp8x4ToT<MT>(raw.x, vals);
        Fp8x4ToT<MT>(raw.y, vals + 4);
        Fp8x4ToT<MT>(raw.z, vals + 8);
        Fp8x4ToT<MT>(raw.w, vals + 12);
        uint4* out = reinterpret_cast<uint4*>(dst + (is_v ? tc::kTile * tc::kRow : 0) + key * tc::kRow + col);
        out[0] = reinterpret_cast<const uint4*>(vals)[0];
        out[1] = reinterpret_cast<const uint4*>(vals)[1];
      }
      __syncthreads();
    }
    const MT* K = kFp8 ? Ks : reinterpret_cast<const MT*>(stage);
    const MT* V = K + tc::kTile * tc::kRow;
    const int kb = warp * 16;  // this warp's 16 keys of the tile
    if (k0 + kb < end) {
      float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
      for (int kc = 0; kc < 8; ++kc) {
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          const MT* krow = K + (kb + nt * 8 + g) * tc::kRow + kc * 16 + t4 * 2;
          Mma16816<MT>(s[nt], qa[kc], *reinterpret_cast<const uint32_t*>(krow),
                      *reinterpret_cast<const uint32_t*>(krow + 8));
        }
      }
      // Scale (and FP8 key scales), mask the keys past the end (only a split's last tile can
      // have any), online softmax per row.
      const bool partial = k0 + kb + 16 > end;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int col = kb + nt * 8 + t4 * 2 + (i & 1);
          float v = s[nt][i] * s_mul;
          if constexpr (kFp8) v *= sk[col];
          s[nt][i] = !partial || k0 + col < end ? v : -INFINITY;
        }
      float mx0 = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
      float mx1 = fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3]));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);  // finite: key kb is valid
      const float al0 = exp2f(m0 - mn0), al1 = exp2f(m1 - mn1);  // 0 while nothing was seen
      m0 = mn0;
      m1 = mn1;
      float p[2][4];
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) p[nt][i] = exp2f(s[nt][i] - (i < 2 ? mn0 : mn1));  // 0 when masked
      l0 = l0 * al0 + p[0][0] + p[0][1] + p[1][0] + p[1][1];
      l1 = l1 * al1 + p[0][2] + p[0][3] + p[1][2] + p[1][3];
      // Rescale the running output only when some row's maximum moved (al < 1): after the
      // first tiles that is rare, and the 64 multiplies are a fifth of the loop's instructions.
      if (!__all_sync(0xffffffffu, al0 == 1.f && al1 == 1.f)) {
#pragma unroll
        for (int n = 0; n < 16; ++n) {
          o[n][0] *= al0;
          o[n][1] *= al0;
          o[n][2] *= al1;
          o[n][3] *= al1;
        }
      }
      if constexpr (kFp8) {
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int i = 0; i < 4; ++i) p[nt][i] *= sv[kb + nt * 8 + t4 * 2 + (i & 1)];
      }
      // P as an A fragment: the two 8-key accumulator tiles are the two 8-column halves.
      const uint32_t pa[4] = {Pack2<MT>(p[0][0], p[0][1]), Pack2<MT>(p[0][2], p[0][3]),
                              Pack2<MT>(p[1][0], p[1][1]), Pack2<MT>(p[1][2], p[1][3])};
      const MT* vbase = V + (kb + ((lane >> 3) & 1) * 8 + (lane & 7)) * tc::kRow + (lane >> 4) * 8;
#pragma unroll
      for (int dp = 0; dp < 8; ++dp) {
        uint32_t vb[4];
        LdMatrixX4Trans(vb, vbase + dp * 16);
        Mma16816<MT>(o[2 * dp], pa, vb[0], vb[1]);
        Mma16816<MT>(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // the stage is reloaded next iteration
  }
  CpAsyncWait<0>();
  __syncthreads();

  // Rows' sums over the four threads of each row; then the warps' results to shared memory.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  float* wo = sm_o + warp * 16 * tc::kD;
  if (t4 == 0) {
    sm_m[warp * 16 + g] = m0;
    sm_m[warp * 16 + g + 8] = m1;
    sm_l[warp * 16 + g] = l0;
    sm_l[warp * 16 + g + 8] = l1;
  }
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    const int d = n * 8 + t4 * 2;
    wo[g * tc::kD + d] = o[n][0];
    wo[g * tc::kD + d + 1] = o[n][1];
    wo[(g + 8) * tc::kD + d] = o[n][2];
    wo[(g + 8) * tc::kD + d + 1] = o[n][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * tc::kD; i += tc::kThreads) {
    const int r = i / tc::kD, d = i - r * tc::kD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; ++w) M = fmaxf(M, sm_m[w * 16 + r]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float mw = sm_m[w * 16 + r];
      const float f = mw == -INFINITY ? 0.f : exp2f(mw - M);  // a warp that saw no key
      L += sm_l[w * 16 + r] * f;
      O += sm_o[(w * 16 + r) * tc::kD + d] * f;
    }
    if (d == 0) {
      fin_m[r] = M;
      fin_l[r] = L;
    }
    sm_o[r * tc::kD + d] = O;  // warp 0's slot; (r, d) has one owner
  }
  __syncthreads();
  FinishSplit<T>(a, b, kh, split, G, fin_m, fin_l, sm_o, tc::kD);
}

// The tensor-core kernel for (T, FP8 cache, stages), with its shared memory allowed (once).
template <typename T, bool kFp8, int kStages>
cudaError_t PrepareTc(void (**kernel)(PagedAttentionArgs), size_t* smem) {
  *kernel = DecodeAttentionTcKernel<T, kFp8, kStages>;
  *smem = tc::SmemBytes(kFp8, kStages);
  return AllowDynamicSmem<DecodeAttentionTcKernel<T, kFp8, kStages>>(static_cast<int>(*smem));
}

template <typename T>
cudaError_t PrepareTcFor(const PagedAttentionArgs& a, void (**kernel)(PagedAttentionArgs), size_t* smem) {
  if (a.stages == 3) return a.fp8_cache ? PrepareTc<T, true, 3>(kernel, smem) : PrepareTc<T, false, 3>(kernel, smem);
  return a.fp8_cache ? PrepareTc<T, true, 2>(kernel, smem) : PrepareTc<T, false, 2>(kernel, smem);
}

cudaError_t PrepareTcAny(const PagedAttentionArgs& a, void (**kernel)(PagedAttentionArgs), size_t* smem) {
  return a.dt == DType::kBF16 ? PrepareTcFor<__nv_bfloat16>(a, kernel, smem) : PrepareTcFor<__half>(a, kernel, smem);
}

int LaunchTc(const PagedAttentionArgs& a, cudaStream_t stream) {
  void (*kernel)(PagedAttentionArgs) = nullptr;
  size_t smem = 0;
  cudaError_t e = PrepareTcAny(a, &kernel, &smem);
  if (e != cudaSuccess) return static_cast<int>(e);
  dim3 grid(a.kvh, a.nsplit, a.n_queries);
  return static_cast<int>(Launch(kernel, grid, dim3(tc::kThreads), smem, stream, a));
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

// 16 bytes of weights, read once a step: through the read-only path, not kept in L1, and with
// L2 asked to fetch the whole 256-byte piece around them (a GEMV reads the rest of it soon).
// gemv_bench on the H200 (device run 20b, bench/gpu/results/gemv/): the GEMVs of a batch-1 step
// 1.375 ms against 1.486 with ld.global.cs, the lm_head 152 us against 175.
template <typename T>
__device__ __forceinline__ uint4 LoadStreaming(const T* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
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
  if (cudaError_t e = AllowDynamicSmem<GemvKernel<T, kM, kMode>>(kGemvMaxSmem); e != cudaSuccess)
    return static_cast<int>(e);
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
    case GemvOut::kRopeKv: break;  // the tensor-core kernel only (GemvRopeKvApplies)
  }
  return static_cast<int>(cudaErrorInvalidValue);
}


// --- tensor-core GEMV (1 to 8 rows, bf16/f16) -----------------------------------------------
//
// The same products and epilogues as GemvKernel, for 16-bit weights with K a multiple of 64, on
// tensor cores so that the batch's rows cost nothing extra: mma.sync m16n8k16 with x as A (the
// batch's rows; rows M..15 zero) and 8 rows of W as B (a tile of 8 outputs). The k order
// inside a step is permuted the same way for A and B (a dot product does not care), so that
// each lane reads two 16-byte pieces of one W row and the matching pieces of its x row: lane l
// takes W row l / 4 of the tile, and the four lanes of a quad read 64 contiguous bytes of it
// per load (whole sectors).
//
// The grid is persistent: at most as many blocks as fit on the GPU at once, each taking tiles
// round after round. The 8 warps of a block split K into S slices (S = 1, 2, 4 or 8: the count
// that gives a warp the fewest steps, GemvTcGridFor; slices differ by at most one step), so each
// warp owns (tile, slice) units; a block round covers 8 / S tiles, and the S partial sums of a
// tile meet in shared memory. Each lane keeps up to kTgLoads 16-byte weight loads in flight
// through a ring of registers that runs across unit and round boundaries, so the stream of
// weights never waits for an epilogue; the ring's first loads are issued before the wait on the
// previous kernel (PDL), as weights allow.
// The ring reloads a half at a time: once a half's steps are consumed, its slots load the steps
// kDepth ahead together, so that the wait for a step's weights never also waits for loads issued
// after them (reloading each slot as it was consumed, the lm_head took 151 us instead of 133 in
// gemv_bench on the H200, device run 23).
//
// FP8 weights (w_scale set): W holds e4m3 bytes, one scale per output row. A step then covers
// 128 k, so that it moves the same bytes as a 16-bit step: lane c reads k [16c, 16c + 16) and
// [64 + 16c, 80 + 16c) (each quad load again 64 contiguous bytes), turned into f16 pairs exactly
// (every e4m3 value is an f16 value). x is staged as f16 (a bf16 model's values converted,
// exact in f16's normal range) and the products run on f16 tensor cores. The row's scale
// multiplies the float32 sum before the epilogue.
//
// Int4 weights (int4_scale set; the layout in kernels.h): a step covers 256 k, again 128 bytes
// of a row, a load 128 k: one group. Each 32-bit word of a load turns into four pairs of T with
// a mask and an or (the nibble as the low mantissa bits of 128 (bf16) or 1024 (f16)) and one
// subtraction of that base plus the group's zero point, exactly. x is staged in the order the
// lanes read it (a load's 32 values of x as four 16-byte reads). A group's products sum in
// their own accumulator, which its scale then multiplies into the row's float32 sum.

constexpr int kTgThreads = 256;
constexpr int kTgWarps = kTgThreads / 32;
constexpr int kTgStepK = 64;  // k of one warp step on 16-bit weights
// The weights' format: 16-bit, e4m3 with row scales, or int4 in groups of 128 with scales and zero points.
enum class WFmt { k16, kFp8, kInt4 };
// k of one warp step: each takes 128 bytes of a row (each lane's 16-byte loads stay as many),
// so FP8 weights take two 16-bit steps' k and int4 four (K must be a multiple of it).
constexpr __host__ __device__ int TgStepK(WFmt f) {
  return f == WFmt::kInt4 ? 4 * kTgStepK : f == WFmt::kFp8 ? 2 * kTgStepK : kTgStepK;
}
constexpr int kTgStepBytes = 128;  // of a W row, per step, in every format
constexpr int kTgTileN = 8;   // outputs of one tile (the mma's n)
constexpr int kTgPad = 32;    // elements of padding per staged row of x: rows 64 bytes apart in banks
constexpr int kTgLoads = 16;  // 16-byte weight loads in flight per lane
// Int4: half as many (each load carries twice the products, and its scales and zero points
// ride along in registers too).
constexpr __host__ __device__ int TgLoadsInFlight(WFmt f) { return f == WFmt::kInt4 ? kTgLoads / 2 : kTgLoads; }
// Int4: the bits of 128 (bf16) or 1024 (f16), whose low mantissa bits then hold a nibble exactly.
template <typename T>
constexpr uint32_t kInt4Base = std::is_same_v<T, __half> ? 0x6400u : 0x4300u;

// Shared memory of the staged rows of x.
size_t TgSmem(int M, int K) { return static_cast<size_t>(M) * (K + kTgPad) * 2; }

// kRopeKv's epilogue for row m of x and the outputs n1 and n2 of one lane: for the q and k heads
// (rotate) a pair (j, j + D / 2) of one head, for v two neighbours. The sums v1 and v2 become what
// the unfused path computes: the GEMV's store of x W + bias as T, then RopeKvWrite's rotation of
// that (each op rounded as there) and its copies of k and v into the cache at the row's slot.
template <typename T>
__device__ __forceinline__ void RopeKvEpilogue(const GemvArgs& a, int m, int64_t n1, int64_t n2, bool rotate,
                                               float v1, float v2) {
  if (n1 >= a.N) return;
  if (a.w_scale != nullptr) {
    v1 *= a.w_scale[n1];
    v2 *= a.w_scale[n2];
  }
  const T* bias = static_cast<const T*>(a.bias);
  const float x1 = Round<T>(v1 + (bias != nullptr ? ToF(bias[n1]) : 0.f));
  const float x2 = Round<T>(v2 + (bias != nullptr ? ToF(bias[n2]) : 0.f));
  T* y = static_cast<T*>(a.y) + static_cast<int64_t>(m) * a.ldy;
  const int64_t slot = a.slots[m];
  const int D = a.D;
  if (rotate) {
    const int h = static_cast<int>(n1 / D), j = static_cast<int>(n1 - static_cast<int64_t>(h) * D);
    T y1, y2;
    RotateHalfPair<T>(x1, x2, static_cast<float>(a.pos[m]), a.inv_freq[j], &y1, &y2);
    y[n1] = y1;
    y[n2] = y2;
    if (h >= a.nh) {
      T* dst = static_cast<T*>(a.k_cache) + (slot * a.kvh + (h - a.nh)) * D;
      dst[j] = y1;
      dst[j + D / 2] = y2;
    }
  } else {
    const T y1 = FromF<T>(x1), y2 = FromF<T>(x2);
    y[n1] = y1;
    y[n2] = y2;
    T* dst = static_cast<T*>(a.v_cache) + slot * a.kvh * D + (n1 - static_cast<int64_t>(a.nh + a.kvh) * D);
    dst[0] = y1;
    dst[n2 - n1] = y2;
  }
}

template <typename T, GemvOut kMode, WFmt kFmt>
__global__ void __launch_bounds__(kTgThreads, 2) GemvTcKernel(GemvArgs a, int split, int rounds) {
  constexpr bool kFp8 = kFmt == WFmt::kFp8, kInt4 = kFmt == WFmt::kInt4;
  using X = std::conditional_t<kFp8, __half, T>;  // the staged x and the products' type
  extern __shared__ __align__(16) unsigned char tg_smem[];
  X* xs = reinterpret_cast<X*>(tg_smem);  // [M][K + kTgPad]
  constexpr int kPairs = kMode == GemvOut::kSiluMul ? 2 : 1;
  constexpr int kLoads = 2;                         // 16-byte loads per lane and step
  constexpr int kStepK = TgStepK(kFmt);
  constexpr int kDepth = TgLoadsInFlight(kFmt) / (kLoads * kPairs);  // steps in flight
  constexpr int kHalf = kDepth > 1 ? kDepth / 2 : 1;  // steps reloaded together
  __shared__ float red[2][kTgWarps][32][kPairs][2];  // partial sums of a round (double-buffered)
  const int K = a.K, M = a.M, tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
  const int xrow = K + kTgPad;
  const int slice = warp % split, tiles_per_round = kTgWarps / split;
  // This warp's slice of K: steps [s0, s0 + steps) of the row's K / kStepK (slices differ by at most one).
  const int all_steps = K / kStepK;
  const int s0 = slice * all_steps / split, steps = (slice + 1) * all_steps / split - s0;
  const unsigned char* W = static_cast<const unsigned char*>(a.w);
  const int64_t row_bytes = static_cast<int64_t>(all_steps) * kTgStepBytes;
  // This warp's tile in round r (>= tiles: none; the warp still takes part in the round).
  auto tile_of = [&](int r) {
    return (static_cast<int64_t>(blockIdx.x) + static_cast<int64_t>(r) * gridDim.x) * tiles_per_round +
           warp / split;
  };
  // The W row of a tile's output o (0..7): tile x 8 + o, except for kRopeKv's q and k heads, whose
  // tiles hold each rotated pair's halves side by side: output o of tile t of a head is the head's
  // row j (o even) or j + D / 2 (o odd), j = 4 (t mod D / 8) + o / 2. So lane c's two outputs in
  // the epilogue, 2c and 2c + 1, are the pair that RoPE rotates together.
  const int64_t qk_tiles = kMode == GemvOut::kRopeKv ? static_cast<int64_t>(a.nh + a.kvh) * a.D / kTgTileN : 0;
  auto row_of = [&](int64_t tile, int o) -> int64_t {
    if (kMode == GemvOut::kRopeKv && tile < qk_tiles) {
      const int64_t per_head = a.D / kTgTileN, h = tile / per_head, i = tile - h * per_head;
      return h * a.D + (o & 1) * (a.D / 2) + 4 * i + o / 2;
    }
    return tile * kTgTileN + o;
  };
  // Lane c of a quad reads bytes [16c, 16c + 16) and [64 + 16c, 80 + 16c) of each step's 128
  // bytes of its row: the quad's 16-byte loads cover 64 contiguous bytes, whole 32-byte sectors.
  // In k: [8c, 8c + 8) and [32 + 8c, 40 + 8c) of 16-bit weights, [16c, 16c + 16) and
  // [64 + 16c, 80 + 16c) of FP8 ones; int4's order is the layout's (kernels.h). k_lane is where
  // the lane's x starts in a staged step.
  const int k_lane = s0 * kStepK + c * (kFp8 ? 16 : 8);  // + step * kStepK
  constexpr int kLoadK = kStepK / 2;

  uint4 ring[kDepth][kPairs][kLoads];
  // Int4: each slot's scales of outputs 2c and 2c + 1 (both groups of the step) and zero points
  // of row g (the low byte the first group's).
  struct Groups {
    float4 scale;
    uint32_t zero;
  };
  Groups groups[kInt4 ? kDepth : 1][kPairs];
  int ir = 0, ik = 0;  // the next step to load: round, step within the unit
  auto issue = [&](int slot) {
    if (ir < rounds) {
      const int64_t tile = tile_of(ir), n = row_of(tile, g);
      const int k = k_lane + ik * kStepK;  // 16-bit and FP8: the lane's first k of the step
#pragma unroll
      for (int p = 0; p < kPairs; ++p) {
        const int64_t row = p == 0 ? n : a.N + n;
#pragma unroll
        for (int l = 0; l < kLoads; ++l) {
          // Bytes [16 c + 64 l, + 16) of step s0 + ik of the row (16-bit and FP8: from k, as
          // the kernel computed it before int4 came).
          const unsigned char* at;
          if constexpr (kInt4) {
            at = W + row * row_bytes + (s0 + ik) * kTgStepBytes + 16 * c + 64 * l;
          } else {
            constexpr int kWBytes = kFp8 ? 1 : 2;
            at = W + (row * K + k + kLoadK * l) * kWBytes;
          }
          ring[slot][p][l] = n < a.N ? LoadStreaming(at) : make_uint4(0, 0, 0, 0);
        }
        if constexpr (kInt4) {
          // The records of (this tile, this step): [8 rows][2 groups].
          const int64_t rec = ((p == 0 ? tile : a.N / kTgTileN + tile) * all_steps + s0 + ik) * kTgTileN;
          groups[slot][p].scale = n < a.N ? *reinterpret_cast<const float4*>(a.int4_scale + (rec + 2 * c) * 2)
                                          : make_float4(0.f, 0.f, 0.f, 0.f);
          groups[slot][p].zero = n < a.N ? *reinterpret_cast<const uint16_t*>(a.int4_zero + (rec + g) * 2) : 0u;
        }
      }
      if (++ik == steps) {
        ik = 0;
        ++ir;
      }
    }
  };
#pragma unroll
  for (int i = 0; i < kDepth; ++i) issue(i);
  GridDepWait();
  GridDepLaunch();

  // Stage this warp's slice of the rows of x (normalised when asked) as X. Each warp stages the
  // slice it reads itself (warps of one slice write the same values), so no block-wide barrier
  // stands between the wait and the first products at one row (the norm's sums below).
  // Eight values of row m from column k (a multiple of 8) into place: as they are, or for int4
  // in the lanes' order, where column 256 s + 16 j + 4 q + e sits at 256 s + 32 (j / 2) + 8 q +
  // 4 (j % 2) + e (lane q's 32 values of a load as four 16-byte pieces, the quad's side by side).
  // The values come as their bits, packed (v.x: columns k and k + 1): nvcc 13 dropped three of
  // the eight values when this took an array of X filled by memcpy from x.
  auto put8 = [&](int m, int k, const uint4& v) {
    if constexpr (kInt4) {
      const int j = (k % 256) / 16, q = (k % 16) / 4;  // q is 0 or 2: values 4..7 are lane q + 1's
      X* d = xs + m * xrow + (k - k % 256) + 32 * (j / 2) + 8 * q + 4 * (j % 2);
      *reinterpret_cast<uint2*>(d) = make_uint2(v.x, v.y);
      *reinterpret_cast<uint2*>(d + 8) = make_uint2(v.z, v.w);
    } else {
      *reinterpret_cast<uint4*>(xs + m * xrow + k) = v;
    }
  };
  const T* x = static_cast<const T*>(a.x);
  const int k_begin = s0 * kStepK, k_end = k_begin + steps * kStepK;
  // Row m's 1 / rms over all of K, summed by one warp.
  auto inv_rms = [&](const T* xm) {
    float ss = 0.f;
    for (int k = lane * 8; k < K; k += 256) {
      float v[8];
      LoadVec<T, 8>(xm + k, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) ss += v[e] * v[e];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    return rsqrtf(ss / static_cast<float>(K) + a.eps);
  };
  // One row: each warp sums its squares (no barrier before the products). More rows: warp m
  // sums row m's once for the block, which then meets at a barrier (every warp summing every
  // row read M times K values from L2 per warp, more than a warp's weights of a small layer).
  __shared__ float block_rs[kGemvMaxRows];
  if (a.norm_w != nullptr && M > 1) {
    if (warp < M) {
      const float rs = inv_rms(x + warp * a.ldx);
      if (lane == 0) block_rs[warp] = rs;
    }
    __syncthreads();
  }
  for (int m = 0; m < M; ++m) {
    const T* xm = x + m * a.ldx;
    if (a.norm_w != nullptr) {
      const float rs = M > 1 ? block_rs[m] : inv_rms(xm);
      const T* nw = static_cast<const T*>(a.norm_w);
      for (int k = k_begin + lane * 8; k < k_end; k += 256) {
        float v[8], w[8];
        LoadVec<T, 8>(xm + k, v);
        LoadVec<T, 8>(nw + k, w);
        float out[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) out[e] = Round<T>(w[e] * Round<T>(v[e] * rs));
        put8(m, k, make_uint4(Pack2<X>(out[0], out[1]), Pack2<X>(out[2], out[3]), Pack2<X>(out[4], out[5]),
                              Pack2<X>(out[6], out[7])));
      }
    } else if constexpr (kFp8 && !std::is_same_v<T, __half>) {
      for (int k = k_begin + lane * 8; k < k_end; k += 256) {
        float v[8];
        LoadVec<T, 8>(xm + k, v);
        put8(m, k, make_uint4(Pack2<X>(v[0], v[1]), Pack2<X>(v[2], v[3]), Pack2<X>(v[4], v[5]), Pack2<X>(v[6], v[7])));
      }
    } else {  // as they are (x and k 16-byte aligned: GemvTcApplies)
      for (int k = k_begin + lane * 8; k < k_end; k += 256) put8(m, k, *reinterpret_cast<const uint4*>(xm + k));
    }
  }
  __syncwarp();

  float acc[kPairs][4];
#pragma unroll
  for (int p = 0; p < kPairs; ++p) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = 0.f;
  // The end of round r's unit: the S slices' sums meet, and the first warp of the tile applies
  // the epilogue. Lane l holds row g of x against outputs 2c and 2c + 1 of the tile.
  auto finish = [&](int r) {
    float v[kPairs][2];
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      v[p][0] = acc[p][0];
      v[p][1] = acc[p][1];
    }
    if (split > 1) {
      auto& buf = red[r & 1];
#pragma unroll
      for (int p = 0; p < kPairs; ++p) {
        buf[warp][lane][p][0] = v[p][0];
        buf[warp][lane][p][1] = v[p][1];
      }
      __syncthreads();
      if (slice != 0) return;
      for (int s = 1; s < split; ++s)
#pragma unroll
        for (int p = 0; p < kPairs; ++p) {
          v[p][0] += buf[warp + s][lane][p][0];
          v[p][1] += buf[warp + s][lane][p][1];
        }
    }
    const int64_t tile = tile_of(r);
    if (g >= M) return;
    if constexpr (kMode == GemvOut::kRopeKv) {
      RopeKvEpilogue<T>(a, g, row_of(tile, 2 * c), row_of(tile, 2 * c + 1), tile < qk_tiles, v[0][0], v[0][1]);
    } else {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t n = tile * kTgTileN + 2 * c + j;
        if (n >= a.N) continue;
        if constexpr (kFp8) {
#pragma unroll
          for (int p = 0; p < kPairs; ++p) v[p][j] *= a.w_scale[p == 0 ? n : a.N + n];
        }
        const int64_t at = g * a.ldy + n;
        if constexpr (kMode == GemvOut::kStore) {
          const float b = a.bias != nullptr ? ToF(static_cast<const T*>(a.bias)[n]) : 0.f;
          static_cast<T*>(a.y)[at] = FromF<T>(v[0][j] + b);
        } else if constexpr (kMode == GemvOut::kStoreF32) {
          const float b = a.bias != nullptr ? ToF(static_cast<const T*>(a.bias)[n]) : 0.f;
          static_cast<float*>(a.y)[at] = Round<T>(v[0][j] + b);
        } else if constexpr (kMode == GemvOut::kResidual) {
          T* y = static_cast<T*>(a.y);
          y[at] = FromF<T>(ToF(y[at]) + Round<T>(v[0][j]));
        } else {
          const float gate = Round<T>(v[0][j]), up = Round<T>(v[kPairs - 1][j]);
          const float s = Round<T>(gate / (1.f + expf(-gate)));
          static_cast<T*>(a.y)[at] = FromF<T>(s * up);
        }
      }
    }
  };

  const int total = rounds * steps;
  int cr = 0, ck = 0;  // the step being consumed
  const X* xg = xs + (g < M ? g : 0) * xrow + k_lane;
  for (int j0 = 0; j0 < total; j0 += kDepth) {
#pragma unroll
    for (int i = 0; i < kDepth; ++i) {
      if (j0 + i < total) {
        if constexpr (kInt4) {
#pragma unroll
          for (int l = 0; l < kLoads; ++l) {  // load l: group l of the step
            // The lane's 32 values of x for this load: slice s's pairs are xa[2 s] (its k 4c,
            // 4c + 1) and xa[2 s + 1] (4c + 2, 4c + 3).
            uint32_t xa[16];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
              uint4 v = make_uint4(0, 0, 0, 0);
              if (g < M) v = *reinterpret_cast<const uint4*>(xg + ck * kStepK + 32 * (4 * l + u));
              xa[4 * u] = v.x, xa[4 * u + 1] = v.y, xa[4 * u + 2] = v.z, xa[4 * u + 3] = v.w;
            }
#pragma unroll
            for (int p = 0; p < kPairs; ++p) {
              const Groups& gr = groups[i][p];
              const uint32_t z = kInt4Base<X> | ((gr.zero >> (8 * l)) & 15u);
              const uint32_t base = z | (z << 16);  // (base + zero) twice
              const uint32_t raw[4] = {ring[i][p][l].x, ring[i][p][l].y, ring[i][p][l].z, ring[i][p][l].w};
              float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
              for (int s = 0; s < 8; ++s) {  // the load's k16 slices: word s / 2, nibbles from 8 (s % 2)
                auto pair = [&](int shift) {  // nibbles `shift` and 16 + `shift` as q - zero, exact
                  const uint32_t v = ((raw[s / 2] >> shift) & 0x000F000Fu) | (kInt4Base<X> * 0x10001u);
                  return Sub2<X>(v, base);
                };
                const uint32_t af[4] = {xa[2 * s], 0u, xa[2 * s + 1], 0u};
                Mma16816<X>(part, af, pair(8 * (s % 2)), pair(8 * (s % 2) + 4));
              }
              acc[p][0] += (l == 0 ? gr.scale.x : gr.scale.y) * part[0];
              acc[p][1] += (l == 0 ? gr.scale.z : gr.scale.w) * part[1];
            }
          }
        } else {
          // The lane's x values matching its weights: 16 (two 16-byte reads) per step, 32 for FP8.
          constexpr int kXReads = kFp8 ? 4 : 2;
          uint32_t xa[4 * kXReads];
#pragma unroll
          for (int r = 0; r < kXReads; ++r) {
            uint4 v = make_uint4(0, 0, 0, 0);
            // FP8: reads 0, 1 at the first load's k, 2, 3 at the second's; else one per load.
            const int off = kFp8 ? (r / 2) * kLoadK + (r % 2) * 8 : r * kLoadK;
            if (g < M) v = *reinterpret_cast<const uint4*>(xg + ck * kStepK + off);
            xa[4 * r] = v.x, xa[4 * r + 1] = v.y, xa[4 * r + 2] = v.z, xa[4 * r + 3] = v.w;
          }
#pragma unroll
          for (int p = 0; p < kPairs; ++p) {
            // The weights as pairs of X, in the order of xa.
            uint32_t wb[4 * kXReads];
#pragma unroll
            for (int l = 0; l < kLoads; ++l) {
              const uint32_t raw[4] = {ring[i][p][l].x, ring[i][p][l].y, ring[i][p][l].z, ring[i][p][l].w};
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                if constexpr (kFp8) {
#pragma unroll
                  for (int h = 0; h < 2; ++h) {
                    const __half2_raw hv = __nv_cvt_fp8x2_to_halfraw2(
                        static_cast<__nv_fp8x2_storage_t>(raw[e] >> (16 * h)), __NV_E4M3);
                    memcpy(&wb[8 * l + 2 * e + h], &hv, 4);
                  }
                } else {
                  wb[4 * l + e] = raw[e];
                }
              }
            }
            // The k16 slices of the step: the lane's values 4q .. 4q + 3.
#pragma unroll
            for (int q = 0; q < kXReads * 2; ++q) {
              const uint32_t af[4] = {xa[2 * q], 0u, xa[2 * q + 1], 0u};
              Mma16816<X>(acc[p], af, wb[2 * q], wb[2 * q + 1]);
            }
          }
        }
        if (++ck == steps) {
          finish(cr);
#pragma unroll
          for (int p = 0; p < kPairs; ++p) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = 0.f;
          ck = 0;
          ++cr;
        }
      }
      // Once a half of the ring is consumed, its slots load the steps kDepth ahead, together.
      if ((i + 1) % kHalf == 0) {
#pragma unroll
        for (int s = i + 1 - kHalf; s <= i; ++s) issue(s);
      }
    }
  }
}

// Blocks of `kernel` (with `smem` bytes of dynamic shared memory) that fit on the device at once.
int TgResidentBlocks(const void* kernel, size_t smem) {
  struct Key {
    const void* k;
    size_t s;
    bool operator<(const Key& o) const { return k != o.k ? k < o.k : s < o.s; }
  };
  static std::mutex mu;
  static std::map<Key, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({kernel, smem});
  if (it != cache.end()) return it->second;
  int dev = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kTgThreads, smem) != cudaSuccess)
    return 0;
  const int n = sms * per_sm;
  cache[{kernel, smem}] = n;
  return n;
}

template <typename T, GemvOut kMode, WFmt kFmt>
int LaunchGemvTc(const GemvArgs& a, cudaStream_t stream) {
  auto kernel = GemvTcKernel<T, kMode, kFmt>;
  if (cudaError_t e = AllowDynamicSmem<GemvTcKernel<T, kMode, kFmt>>(kGemvMaxSmem); e != cudaSuccess)
    return static_cast<int>(e);
  const size_t smem = TgSmem(a.M, a.K);
  const int resident = TgResidentBlocks(reinterpret_cast<const void*>(kernel), smem);
  if (resident <= 0) return static_cast<int>(cudaErrorInvalidConfiguration);
  // Slices of two steps at least (int4: one, 256 k): they differ by at most one step, and one of
  // none would never write its tile.
  const GemvTcGrid grid = GemvTcGridFor((a.N + kTgTileN - 1) / kTgTileN, a.K / TgStepK(kFmt),
                                        kFmt == WFmt::kInt4 ? 1 : 2, resident, kTgWarps);
  return static_cast<int>(Launch(kernel, dim3(static_cast<unsigned>(grid.blocks)), dim3(kTgThreads), smem, stream,
                                 a, grid.split, static_cast<int>(grid.rounds)));
}

template <typename T, WFmt kFmt>
int GemvTcMode(const GemvArgs& a, cudaStream_t stream) {
  switch (a.mode) {
    case GemvOut::kStore: return LaunchGemvTc<T, GemvOut::kStore, kFmt>(a, stream);
    case GemvOut::kResidual: return LaunchGemvTc<T, GemvOut::kResidual, kFmt>(a, stream);
    case GemvOut::kSiluMul: return LaunchGemvTc<T, GemvOut::kSiluMul, kFmt>(a, stream);
    case GemvOut::kStoreF32: return LaunchGemvTc<T, GemvOut::kStoreF32, kFmt>(a, stream);
    case GemvOut::kRopeKv:
      if constexpr (kFmt == WFmt::kInt4) {
        return static_cast<int>(cudaErrorInvalidValue);
      } else {
        return LaunchGemvTc<T, GemvOut::kRopeKv, kFmt>(a, stream);
      }
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// The tensor-core GEMV of format kFmt in a's dtype (bf16 or f16: GemvTcApplies).
template <WFmt kFmt>
int GemvTcFor(const GemvArgs& a, cudaStream_t stream) {
  return a.dt == DType::kF16 ? GemvTcMode<__half, kFmt>(a, stream) : GemvTcMode<__nv_bfloat16, kFmt>(a, stream);
}

WFmt FormatOf(const GemvArgs& a) {
  return a.int4_scale != nullptr ? WFmt::kInt4 : a.w_scale != nullptr ? WFmt::kFp8 : WFmt::k16;
}

// True when the tensor-core GEMV takes these arguments: 16-bit, K a multiple of the format's
// step (64, FP8 128, int4 256), x and W 16-byte aligned, the staged rows within shared memory;
// int4 also whole tiles of 8 rows and its records aligned.
bool GemvTcApplies(const GemvArgs& a) {
  const WFmt f = FormatOf(a);
  const bool int4_ok = f != WFmt::kInt4 || (a.N % kTgTileN == 0 && a.int4_zero != nullptr &&
                                            reinterpret_cast<uintptr_t>(a.int4_scale) % 16 == 0 &&
                                            reinterpret_cast<uintptr_t>(a.int4_zero) % 2 == 0);
  return (a.tensor_cores || f != WFmt::k16) && int4_ok && a.dt != DType::kF32 && a.K % TgStepK(f) == 0 &&
         a.ldx % 8 == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && reinterpret_cast<uintptr_t>(a.w) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(a.norm_w) % 16 == 0 && TgSmem(a.M, a.K) <= static_cast<size_t>(kGemvMaxSmem);
}

// W[n, k] = scale * (q - zero) from the int4 GEMV's layout (kernels.h), one thread per 32-bit
// word: the inverse of that layout, written out.
template <typename T>
__global__ void DequantInt4Kernel(DequantInt4Args a) {
  const int64_t words = a.N * a.K / 8;
  for (int64_t wi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; wi < words;
       wi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // Word w of lane c's load l, in step s of row n: bytes 128 s + 64 l + 16 c + 4 w.
    const int64_t steps = a.K / 256, n = wi / (steps * 32);
    const int s = static_cast<int>(wi / 32 % steps), l = static_cast<int>(wi / 16 % 2),
              c = static_cast<int>(wi / 4 % 4), w = static_cast<int>(wi % 4);
    const uint32_t word = reinterpret_cast<const uint32_t*>(a.q)[wi];
    const int64_t rec = ((n / 8 * steps + s) * 8 + n % 8) * 2 + l;  // group 2 s + l of row n
    const float scale = a.scale[rec];
    const int zero = a.zero[rec];
    T* out = static_cast<T*>(a.out) + n * a.ldo + 256 * s;
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // nibble i holds slice 8 l + 2 w + (i / 2) % 2, element e below
      const int q = (word >> (4 * i)) & 15;
      const int slice = 8 * l + 2 * w + (i % 4) / 2, e = (i % 2) * 2 + i / 4;
      out[16 * slice + 4 * c + e] = FromF<T>(scale * static_cast<float>(q - zero));
    }
  }
}


size_t ElementSize(DType dt) { return dt == DType::kF32 ? 4 : 2; }

int Blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

}  // namespace

void SetProgrammaticLaunch(bool enabled) { g_pdl.store(enabled, std::memory_order_relaxed); }

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

int RopeKvWrite(const RopeKvArgs& a, cudaStream_t stream) {
  if (a.rows == 0) return 0;
  if (a.fp8_cache && (a.k_scale == nullptr || a.v_scale == nullptr))
    return static_cast<int>(cudaErrorInvalidValue);
  const dim3 grid(static_cast<unsigned>(a.rows)), block(256);
  switch (a.dt) {
    case DType::kF32: return static_cast<int>(Launch(RopeKvWriteKernel<float>, grid, block, 0, stream, a));
    case DType::kF16: return static_cast<int>(Launch(RopeKvWriteKernel<__half>, grid, block, 0, stream, a));
    case DType::kBF16: return static_cast<int>(Launch(RopeKvWriteKernel<__nv_bfloat16>, grid, block, 0, stream, a));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int GatherKv(const GatherKvArgs& a, cudaStream_t stream) {
  if (a.n == 0) return 0;
  if ((a.kvh * a.D) % 8 != 0 || (a.fp8_cache && a.D % 8 != 0) || a.dt == DType::kF32)
    return static_cast<int>(cudaErrorInvalidValue);
  const int threads = 256;
  const int blocks = Blocks(a.n * a.kvh * a.D / 8 * 2, threads);
  switch (a.dt) {
    case DType::kF16: return static_cast<int>(Launch(GatherKvKernel<__half>, dim3(blocks), dim3(threads), 0, stream, a));
    case DType::kBF16: return static_cast<int>(Launch(GatherKvKernel<__nv_bfloat16>, dim3(blocks), dim3(threads), 0, stream, a));
    case DType::kF32: break;
  }
  return static_cast<int>(cudaErrorInvalidValue);
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

bool TensorCoreAttention(DType dt, int nh, int kvh, int D) {
  return dt != DType::kF32 && D == tc::kD && kvh > 0 && nh % kvh == 0 && nh / kvh <= 16;
}

// The attention kernel for a's shape, then the merge of its splits when there are several.
template <typename T>
int PagedAttentionFor(const PagedAttentionArgs& a, bool tensor_cores, cudaStream_t stream) {
  const int rc = tensor_cores ? LaunchTc(a, stream) : DispatchD<T>(a, stream);
  return rc != 0 || a.nsplit == 1 ? rc : LaunchMerge<T>(a, stream);
}

int PagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.n_queries == 0) return 0;
  const bool tensor_cores = TensorCoreAttention(a.dt, a.nh, a.kvh, a.D) && !a.force_generic;
  if (a.n_queries > kMaxAttentionQueriesPerLaunch || a.nsplit < 1 || a.nsplit > kMaxAttentionSplits ||
      (a.stages != 2 && a.stages != 3) || (a.nsplit > 1 && a.partial == nullptr) ||
      (!tensor_cores && !PagedAttentionSupported(a.nh, a.kvh, a.D)) ||
      (a.fp8_cache && (a.k_scale == nullptr || a.v_scale == nullptr)))
    return static_cast<int>(cudaErrorInvalidValue);
  switch (a.dt) {
    case DType::kF32: return PagedAttentionFor<float>(a, tensor_cores, stream);
    case DType::kF16: return PagedAttentionFor<__half>(a, tensor_cores, stream);
    case DType::kBF16: return PagedAttentionFor<__nv_bfloat16>(a, tensor_cores, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

bool GemvSupported(DType dt, int M, int K) {
  const size_t es = ElementSize(dt);
  return M >= 1 && M <= kGemvMaxRows && K > 0 && (K * es) % 16 == 0 &&
         static_cast<size_t>(M) * K * es <= static_cast<size_t>(kGemvMaxSmem);
}

bool GemvFp8Supported(DType dt, int M, int K) {
  return dt != DType::kF32 && M >= 1 && M <= kGemvMaxRows && K > 0 && K % TgStepK(WFmt::kFp8) == 0 &&
         TgSmem(M, K) <= static_cast<size_t>(kGemvMaxSmem);
}

bool Int4LayoutSupported(DType dt, int64_t N, int64_t K) {
  return dt != DType::kF32 && N > 0 && K > 0 && N % kTgTileN == 0 && K % TgStepK(WFmt::kInt4) == 0;
}

bool GemvInt4Supported(DType dt, int M, int64_t N, int K) {
  return Int4LayoutSupported(dt, N, K) && M >= 1 && M <= kGemvMaxRows &&
         TgSmem(M, K) <= static_cast<size_t>(kGemvMaxSmem);
}

int DequantInt4(const DequantInt4Args& a, cudaStream_t stream) {
  if (a.N == 0) return 0;
  if (!Int4LayoutSupported(a.dt, a.N, a.K) || a.ldo < a.K || a.q == nullptr || a.scale == nullptr ||
      a.zero == nullptr || a.out == nullptr)
    return static_cast<int>(cudaErrorInvalidValue);
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((a.N * a.K / 8 + kThreads - 1) / kThreads, 65535));
  const cudaError_t rc = a.dt == DType::kF16 ? Launch(DequantInt4Kernel<__half>, dim3(blocks), dim3(kThreads), 0, stream, a)
                                             : Launch(DequantInt4Kernel<__nv_bfloat16>, dim3(blocks), dim3(kThreads), 0,
                                                      stream, a);
  return static_cast<int>(rc);
}

int QuantizeFp8Rows(DType dt, const void* x, int64_t ldx, int64_t rows, int64_t K, void* q,
                    int64_t ldq, float* scale, cudaStream_t stream) {
  if (rows == 0 || K == 0) return 0;
  if (rows > 0x7fffffff || ldx < K || ldq < K || x == nullptr || q == nullptr || scale == nullptr)
    return static_cast<int>(cudaErrorInvalidValue);
  constexpr int kThreads = 256;
  const size_t es = ElementSize(dt);
  // 16-bit rows: 16-byte reads (float32 rows are read one value at a time).
  const bool vec = K % 8 == 0 && ldx % 8 == 0 && ldq % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(x) % (8 * es) == 0 && reinterpret_cast<uintptr_t>(q) % 8 == 0;
  const dim3 grid(static_cast<unsigned>(rows)), block(kThreads);
  uint8_t* qb = static_cast<uint8_t*>(q);
  cudaError_t rc = cudaErrorInvalidValue;
  switch (dt) {
    case DType::kF32:
      rc = Launch(QuantizeFp8RowsKernel<float, kThreads>, grid, block, 0, stream, static_cast<const float*>(x), ldx, K,
                  qb, ldq, scale, false);
      break;
    case DType::kF16:
      rc = Launch(QuantizeFp8RowsKernel<__half, kThreads>, grid, block, 0, stream, static_cast<const __half*>(x), ldx,
                  K, qb, ldq, scale, vec);
      break;
    case DType::kBF16:
      rc = Launch(QuantizeFp8RowsKernel<__nv_bfloat16, kThreads>, grid, block, 0, stream,
                  static_cast<const __nv_bfloat16*>(x), ldx, K, qb, ldq, scale, vec);
      break;
  }
  return static_cast<int>(rc);
}

bool GemvRopeKvApplies(const GemvArgs& a) {
  return a.mode == GemvOut::kRopeKv && GemvTcApplies(a) && FormatOf(a) != WFmt::kInt4 && a.D > 0 && a.D % 16 == 0 &&
         a.nh > 0 && a.kvh > 0 && a.N == static_cast<int64_t>(a.nh + 2 * a.kvh) * a.D && a.pos != nullptr &&
         a.slots != nullptr && a.inv_freq != nullptr && a.k_cache != nullptr && a.v_cache != nullptr;
}

int Gemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.N == 0) return 0;
  if (!GemvSupported(a.dt, a.M, a.K) || (a.ldx * ElementSize(a.dt)) % 16 != 0)
    return static_cast<int>(cudaErrorInvalidValue);
  // Quantized weights (int4 with group scales, or FP8 with row scales; not both) run on the
  // tensor-core kernel only; 16-bit ones there where it applies, else on the CUDA-core kernel.
  const WFmt f = FormatOf(a);
  const bool tc = GemvTcApplies(a);
  if ((f == WFmt::kInt4 && a.w_scale != nullptr) || (f != WFmt::k16 && !tc) ||
      (a.mode == GemvOut::kRopeKv && !GemvRopeKvApplies(a)))
    return static_cast<int>(cudaErrorInvalidValue);
  if (tc) {
    switch (f) {
      case WFmt::kInt4: return GemvTcFor<WFmt::kInt4>(a, stream);
      case WFmt::kFp8: return GemvTcFor<WFmt::kFp8>(a, stream);
      case WFmt::k16: return GemvTcFor<WFmt::k16>(a, stream);
    }
  }
  switch (a.dt) {
    case DType::kF32: return GemvMode<float>(a, stream);
    case DType::kF16: return GemvMode<__half>(a, stream);
    case DType::kBF16: return GemvMode<__nv_bfloat16>(a, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace r1::model::cuda
