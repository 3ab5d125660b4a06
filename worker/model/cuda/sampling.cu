// Top-p sampling without a sort (sampling.h says what it computes and why).
#include "worker/model/cuda/sampling.h"

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

namespace r1::model::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;  // 32: one warp can reduce the warps' partials
// The search moves to shared memory once this many keys are left between its bounds (44 KB).
constexpr uint32_t kCap = 11264;
// Each step splits the bounds into this many parts and keeps the one holding the boundary.
constexpr int kWays = 4;
// A token more than this below the row's best scaled logit weighs 0 (exp(-32) * 2^40 < 1), so
// no boundary lies below it.
constexpr float kSpan = 32.f;
// Steps that split by value before splitting the keys' range evenly (which ends in 16 steps of
// 4 parts whatever the values).
constexpr int kValueSteps = 40;

// s -> an unsigned key with the same order (-0 as +0: equal logits are ordered by id).
__device__ __forceinline__ uint32_t KeyOf(float s) {
  uint32_t b = __float_as_uint(s);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float ValueOf(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct Row {
  const float* x;
  int64_t V;
  float inv_t, min_p, top;
  // The scaled logit, rounded as ATen's `logits * inv_t` (no contraction into later ops).
  __device__ __forceinline__ float S(float raw) const {
    return isfinite(raw) ? __fmul_rn(raw, inv_t) : -CUDART_INF_F;
  }
  // The token's weight in units of 2^-40: p = exp(s - top) as ATen rounds it, 0 below min_p.
  __device__ __forceinline__ uint64_t Q(float s) const {
    const float p = expf(__fsub_rn(s, top));
    return p < min_p ? 0ull : static_cast<uint64_t>(p * 0x1p40f);
  }
};

struct Scratch {
  uint64_t v[6][kWarps];
  float f[kWarps];
  uint32_t c[kWarps];
  uint32_t n;
  int64_t found;
};

// Every thread gets the block's sums of v (a fixed order of additions).
template <int N>
__device__ void BlockSum(uint64_t (&v)[N], Scratch& sh) {
  static_assert(N <= 6);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] += __shfl_xor_sync(~0u, v[i], o);
  }
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) sh.v[i][warp] = v[i];
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < N; ++i) v[i] = sh.v[i][lane];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] += __shfl_xor_sync(~0u, v[i], o);
  }
  __syncthreads();
}

__device__ float BlockMax(float v, Scratch& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(~0u, v, o));
  if (lane == 0) sh.f[warp] = v;
  __syncthreads();
  v = sh.f[lane];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(~0u, v, o));
  __syncthreads();
  return v;
}

// Calls f(id, raw) for every slot of the row in tiles of kThreads * VEC consecutive ids: thread
// t takes ids base + t * VEC ... + VEC - 1. kUnroll tiles are loaded before any is used (more
// bytes in flight: at batch 1 one block reads the whole row). Every thread runs every tile
// (raw = -inf past the row's end), so warp votes are safe inside f.
template <int VEC, class F>
__device__ __forceinline__ void ForTiles(const Row& r, F&& f) {
  constexpr int kUnroll = 4;
  constexpr int64_t kTile = int64_t{kThreads} * VEC;
  for (int64_t base = 0; base < r.V; base += kTile * kUnroll) {
    float v[kUnroll][VEC];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * kTile + int64_t{threadIdx.x} * VEC;
      if constexpr (VEC == 4) {
        if (i < r.V) {
          const float4 t = __ldg(reinterpret_cast<const float4*>(r.x + i));
          v[u][0] = t.x, v[u][1] = t.y, v[u][2] = t.z, v[u][3] = t.w;
        } else {
          v[u][0] = v[u][1] = v[u][2] = v[u][3] = -CUDART_INF_F;
        }
      } else {
        v[u][0] = i < r.V ? __ldg(r.x + i) : -CUDART_INF_F;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) f(base + u * kTile + int64_t{threadIdx.x} * VEC + j, v[u][j]);
    }
  }
}

// The boundary token of one cut: the first token, in the order (s descending, id ascending),
// whose cumulative weight reaches M.
struct Cut {
  uint32_t key;       // its s
  uint64_t above;     // the weight of every token with a larger s
  uint64_t q;         // the weight of one token with this s
  uint64_t rank;      // it is the rank-th (from 0) token with this s, by id
  uint32_t count_ge;  // tokens with this s or larger
};

// The bracket [lo, hi] of keys that holds the boundary: the tokens above hi weigh `above` < M,
// and with those in the bracket (`count` of them) at least M.
struct Bracket {
  uint32_t lo, hi, count;
  uint64_t above = 0;
  uint32_t above_n = 0;
};

// One step's split of a bracket: parts [t[j], t[j + 1]) (the last up to hi), with the weight
// w[j] and count c[j] of the tokens at t[j] or above (within the bracket).
struct Split {
  uint32_t t[kWays];
  uint64_t w[kWays];
  uint32_t c[kWays];

  // Thresholds by value (even parts of [value(lo), value(hi)]) or by key; t[1] > lo, then
  // non-decreasing up to hi (an empty part is never chosen: see Narrow).
  __device__ Split(const Bracket& br, bool by_value) {
    t[0] = br.lo;
    const float a = ValueOf(br.lo), b = ValueOf(br.hi);
#pragma unroll
    for (int j = 1; j < kWays; ++j) {
      uint32_t m = by_value ? KeyOf(a + (b - a) * (static_cast<float>(j) / kWays))
                            : br.lo + static_cast<uint32_t>(uint64_t{br.hi - br.lo} * j / kWays);
      m = max(m, j == 1 ? br.lo + 1 : t[j - 1]);
      t[j] = min(m, br.hi);
      w[j] = 0;
    }
    w[0] = 0;
#pragma unroll
    for (int j = 0; j < kWays; ++j) c[j] = 0;
  }

  // Counts one token (its key k and scaled logit s) if it lies in [lo, hi].
  __device__ __forceinline__ void Add(const Row& r, const Bracket& br, uint32_t k, float s) {
    if (k < br.lo || k > br.hi) return;
    const uint64_t q = r.Q(s);
#pragma unroll
    for (int j = 0; j < kWays; ++j) {
      if (k >= t[j]) w[j] += q, c[j] += 1;
    }
  }

  __device__ void Reduce(Scratch& sh) {
    static_assert(kWays == 4);
    uint64_t v[6] = {w[0], w[1], w[2], w[3], uint64_t{c[0]} << 32 | c[1], uint64_t{c[2]} << 32 | c[3]};
    BlockSum(v, sh);
    w[0] = v[0], w[1] = v[1], w[2] = v[2], w[3] = v[3];
    c[0] = static_cast<uint32_t>(v[4] >> 32), c[1] = static_cast<uint32_t>(v[4]);
    c[2] = static_cast<uint32_t>(v[5] >> 32), c[3] = static_cast<uint32_t>(v[5]);
  }

  // Keeps the part holding the boundary of M: the highest t[j] with above + w[j] >= M. (If part
  // j were empty, t[j + 1] == t[j] and w[j + 1] == w[j], so j + 1 would be chosen instead.)
  __device__ void Narrow(uint64_t M, Bracket& br) const {
    int j = kWays - 1;
    while (j > 0 && br.above + w[j] < M) --j;
    const bool last = j == kWays - 1;
    const uint64_t w_next = last ? 0 : w[j + 1];
    const uint32_t c_next = last ? 0 : c[j + 1];
    br.above += w_next;
    br.above_n += c_next;
    br.lo = t[j];
    if (!last) br.hi = t[j + 1] - 1;
    br.count = c[j] - c_next;
  }
};

// One pass over the row (from L2) for a split of br.
template <int VEC>
__device__ Split SplitOnRow(const Row& r, const Bracket& br, bool by_value, Scratch& sh) {
  Split sp(br, by_value);
  ForTiles<VEC>(r, [&](int64_t, float raw) {
    const float s = r.S(raw);
    sp.Add(r, br, KeyOf(s), s);
  });
  sp.Reduce(sh);
  return sp;
}

// first: a split of br already summed (the pass that found the total), or nullptr.
template <int VEC>
__device__ Cut FindCut(const Row& r, uint64_t M, Bracket br, const Split* first, uint32_t* keys,
                       Scratch& sh) {
  int step = 0;
  if (first != nullptr) first->Narrow(M, br), ++step;
  // Passes over the row while too many tokens are left for shared memory.
  for (; br.lo < br.hi && br.count > kCap; ++step) {
    SplitOnRow<VEC>(r, br, step < kValueSteps, sh).Narrow(M, br);
  }
  if (br.lo < br.hi) {
    // Copy the bracket's keys into shared memory (in any order), one atomic per warp.
    if (threadIdx.x == 0) sh.n = 0;
    __syncthreads();
    const uint32_t lo = br.lo, hi = br.hi;
    const unsigned below_me = (1u << (threadIdx.x & 31)) - 1;
    ForTiles<VEC>(r, [&](int64_t, float raw) {
      const uint32_t k = KeyOf(r.S(raw));
      const bool in = k >= lo && k <= hi;
      const unsigned vote = __ballot_sync(~0u, in);
      if (vote == 0) return;
      uint32_t at = 0;
      if ((threadIdx.x & 31) == 0) at = atomicAdd(&sh.n, static_cast<uint32_t>(__popc(vote)));
      at = __shfl_sync(~0u, at, 0);
      if (in) keys[at + __popc(vote & below_me)] = k;
    });
    __syncthreads();
    const uint32_t m = sh.n;
    __syncthreads();
    for (; br.lo < br.hi; ++step) {
      if (br.count == 1) {
        // One token left between the bounds: its key is the boundary.
        if (threadIdx.x == 0) sh.n = 0;
        __syncthreads();
        for (uint32_t i = threadIdx.x; i < m; i += kThreads) {
          const uint32_t k = keys[i];
          if (k >= br.lo && k <= br.hi) atomicMax(&sh.n, k);
        }
        __syncthreads();
        br.lo = br.hi = sh.n;
        break;
      }
      Split sp(br, step < kValueSteps);
      for (uint32_t i = threadIdx.x; i < m; i += kThreads) {
        const uint32_t k = keys[i];
        sp.Add(r, br, k, ValueOf(k));
      }
      sp.Reduce(sh);
      sp.Narrow(M, br);
    }
    __syncthreads();  // keys and sh.n may be overwritten by the next cut
  }
  Cut c;
  c.key = br.lo;
  c.above = br.above;
  c.q = r.Q(ValueOf(br.lo));  // > 0: the bracket's weight reached M
  c.rank = (M - br.above + c.q - 1) / c.q - 1;
  c.count_ge = br.above_n + br.count;
  return c;
}

// The id of the rank-th (from 0) token whose key is `key`, in id order.
template <int VEC>
__device__ int64_t NthWithKey(const Row& r, uint32_t key, uint64_t rank, Scratch& sh) {
  if (rank == 0) {
    // The first: each thread's first hit (its ids ascend), then the smallest of those.
    if (threadIdx.x == 0) sh.n = ~0u;
    __syncthreads();
    uint32_t first = ~0u;
    ForTiles<VEC>(r, [&](int64_t id, float raw) {
      if (first == ~0u && id < r.V && KeyOf(r.S(raw)) == key) first = static_cast<uint32_t>(id);
    });
    if (first != ~0u) atomicMin(&sh.n, first);
    __syncthreads();
    return sh.n == ~0u ? 0 : sh.n;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint64_t seen = 0;
  for (int64_t base = 0; base < r.V; base += int64_t{kThreads} * VEC) {
    const int64_t i = base + int64_t{threadIdx.x} * VEC;
    bool hit[VEC];
    uint32_t mine = 0;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      hit[j] = i + j < r.V && KeyOf(r.S(__ldg(r.x + i + j))) == key;
      mine += hit[j];
    }
    // Block-wide inclusive scan of the counts, in id order.
    uint32_t incl = mine;
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(~0u, incl, o);
      if (lane >= o) incl += y;
    }
    if (lane == 31) sh.c[warp] = incl;
    __syncthreads();
    uint32_t w = sh.c[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(~0u, w, o);
      if (lane >= o) w += y;
    }
    const uint32_t before_warp = warp == 0 ? 0 : __shfl_sync(~0u, w, warp - 1);
    const uint32_t tile = __shfl_sync(~0u, w, 31);
    incl += before_warp;
    const uint64_t first = seen + incl - mine;  // the rank of this thread's first hit
    if (mine > 0 && first <= rank && rank < seen + incl) {
      uint64_t left = rank - first;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        if (hit[j] && left-- == 0) sh.found = i + j;
      }
    }
    seen += tile;
    __syncthreads();
    if (seen > rank) return sh.found;
  }
  return 0;  // not reached: the cut's rank is below the number of tokens with its key
}

template <int VEC>
__global__ void __launch_bounds__(kThreads) TopPSampleKernel(TopPSampleArgs a) {
  __shared__ Scratch sh;
  __shared__ uint32_t keys[kCap];
  const int64_t b = blockIdx.x;
  const int64_t row = a.rows != nullptr ? a.rows[b] : b;
  Row r{a.logits + row * a.ld, a.V, a.inv_t[b], a.min_p[b], 0.f};

  float top = -CUDART_INF_F, bottom = CUDART_INF_F;  // the largest and smallest finite s
  ForTiles<VEC>(r, [&](int64_t, float raw) {
    const float s = r.S(raw);
    top = fmaxf(top, s);
    if (s > -CUDART_INF_F) bottom = fminf(bottom, s);
  });
  top = BlockMax(top, sh);
  bottom = -BlockMax(-bottom, sh);
  r.top = isfinite(top) ? top : 0.f;  // a row with no finite logit weighs 0 everywhere
  const uint32_t hi0 = KeyOf(top);
  // Every token with weight lies in [lo0, hi0]; the search starts from the values' range.
  const uint32_t lo0 = isfinite(top) ? KeyOf(fmaxf(bottom, top - kSpan)) : hi0;

  // The total weight, with the first split of [lo0, hi0] summed in the same pass.
  const Bracket br0{lo0, hi0, 0};
  const Split first = SplitOnRow<VEC>(r, br0, true, sh);
  const uint64_t total = first.w[0];

  uint32_t key = hi0;  // no weight at all: the first token with the best s
  uint64_t rank = 0;
  if (total > 0) {
    Bracket br{lo0, hi0, first.c[0]};
    const Split* pre = &first;
    uint64_t kept = total;
    const float top_p = a.top_p[b];
    if (top_p < 1.f) {
      // Kept: the tokens whose weight before them is below top_p * total, i.e. up to the first
      // whose cumulative weight reaches ceil(top_p * total).
      const double want = ceil(static_cast<double>(top_p) * static_cast<double>(total));
      const uint64_t M = want < 1.0 ? 1 : (want >= static_cast<double>(total) ? total : static_cast<uint64_t>(want));
      const Cut c = FindCut<VEC>(r, M, br, pre, keys, sh);
      kept = c.above + (c.rank + 1) * c.q;
      br = Bracket{c.key, hi0, c.count_ge};
      pre = nullptr;
    }
    // The first kept token whose cumulative weight exceeds u * kept.
    const uint64_t M = min(kept, static_cast<uint64_t>(floor(static_cast<double>(a.u[b]) *
                                                             static_cast<double>(kept))) + 1);
    const Cut c = FindCut<VEC>(r, M, br, pre, keys, sh);
    key = c.key;
    rank = c.rank;
  }
  const int64_t id = NthWithKey<VEC>(r, key, rank, sh);
  if (threadIdx.x == 0) a.out[b] = id;
}

}  // namespace

int TopPSample(const TopPSampleArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  if (a.V <= 0 || a.V >= (int64_t{1} << 31) || a.ld < a.V || a.logits == nullptr ||
      a.out == nullptr)
    return cudaErrorInvalidValue;
  const bool vec4 = a.V % 4 == 0 && a.ld % 4 == 0 && reinterpret_cast<uintptr_t>(a.logits) % 16 == 0;
  if (vec4) {
    TopPSampleKernel<4><<<static_cast<unsigned>(a.n), kThreads, 0, stream>>>(a);
  } else {
    TopPSampleKernel<1><<<static_cast<unsigned>(a.n), kThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace r1::model::cuda
