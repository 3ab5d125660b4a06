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
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace r1::model {

#ifdef R1_HAVE_ATTENTION_KERNEL
namespace {

#define R1_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define R1_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))

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

// GCC 12's AMX intrinsics do not tell the compiler what memory they read: _tile_loadconfig
// names 8 of the configuration's 64 bytes (the stores of the tiles' rows and widths were dropped
// in one build, and the next tile load faulted) and _tile_loadd none (stores of the data it
// loads may be moved after it or dropped: the packed q was, and the scores came out NaN). These
// two clobber memory instead.
R1_AMX_TARGET inline void LoadTileConfig(const uint8_t (&cfg)[64]) {
  asm volatile("ldtilecfg %0" ::"m"(cfg) : "memory");
}
#define R1_TILE_LOAD(tile, base, stride) \
  asm volatile("tileloadd (%0,%1,1), %%tmm" #tile ::"r"(base), "r"(static_cast<long>(stride)) : "memory")

// AMX (Intel Sapphire Rapids and later): whether this process may use the tiles: the CPU has
// AMX-TILE and AMX-BF16, and Linux granted the tile data state (arch_prctl
// ARCH_REQ_XCOMP_PERM, process-wide). Asked once.
bool AmxReady() {
  static const bool ready = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 22) & 1) || !((d >> 24) & 1)) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ready;
}

// The scores of a chunk's whole blocks of 16 keys on AMX tiles, for the G (<= 16) query heads
// of one KV head: S^T = K Q^T with A = the 16 keys' K rows, 32 dimensions a tile (loaded
// straight from the cache when the 16 slots are one run, as a sequence's cache blocks of 16
// are, else copied into a buffer first), B = q's pairs transposed ([16 pairs][G]), and C =
// [16 keys][G] float sums, gathered into scores[r * n + j]. One tile product stands for the 24
// vdpbf16ps and 6 horizontal sums a key of the AVX512 loop below (the 1.5B's groups of 6).
// Returns the keys done (n rounded down to 16; 0 for D over 256).
R1_AMX_TARGET int64_t ScoresAmx(int G, const uint16_t* q, const uint16_t* kc, int64_t row_stride,
                                const int64_t* slots, int64_t n, int64_t D, float* scores) {
  const int64_t whole = n - n % 16;
  if (whole == 0 || D > 256 || G > 16) return 0;
  const int chunks = static_cast<int>(D / 32);
  alignas(64) uint32_t qb[8][16][16];
  const auto* q32 = reinterpret_cast<const uint32_t*>(q);
  for (int c = 0; c < chunks; ++c)
    for (int p = 0; p < 16; ++p)
      for (int r = 0; r < 16; ++r) qb[c][p][r] = r < G ? q32[r * D / 2 + c * 16 + p] : 0u;
  // Palette 1; tile 0: C, 16 rows of G floats; tile 1: A, 16 rows of 32 bf16; tile 2: B, 16
  // rows of G pairs.
  alignas(64) uint8_t cfg[64] = {};
  cfg[0] = 1;
  auto tile = [&](int t, int rows, int colsb) {
    cfg[48 + t] = static_cast<uint8_t>(rows);
    cfg[16 + 2 * t] = static_cast<uint8_t>(colsb);
  };
  tile(0, 16, 4 * G);
  tile(1, 16, 64);
  tile(2, 16, 4 * G);
  LoadTileConfig(cfg);
  alignas(64) uint16_t kbuf[16][32];
  alignas(64) float cb[16][16];
  const __m512i rows16 = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
  const int64_t stride = row_stride * 2;  // bytes from one slot's row to the next
  for (int64_t j0 = 0; j0 < whole; j0 += 16) {
    for (int64_t i = j0 + 16; i < std::min(j0 + 32, n); ++i) Prefetch(kc + slots[i] * row_stride, 2 * D);
    bool run = true;
    for (int i = 1; i < 16; ++i) run = run && slots[j0 + i] == slots[j0] + i;
    _tile_zero(0);
    for (int c = 0; c < chunks; ++c) {
      if (run) {
        R1_TILE_LOAD(1, kc + slots[j0] * row_stride + 32 * c, stride);
      } else {
        for (int i = 0; i < 16; ++i)
          _mm512_store_si512(kbuf[i], _mm512_loadu_si512(kc + slots[j0 + i] * row_stride + 32 * c));
        R1_TILE_LOAD(1, kbuf, 64);
      }
      R1_TILE_LOAD(2, qb[c], 64);
      _tile_dpbf16ps(0, 1, 2);
    }
    _tile_stored(0, cb, 64);
    for (int r = 0; r < G; ++r)
      _mm512_storeu_ps(scores + r * n + j0,
                       _mm512_i32gather_ps(_mm512_add_epi32(rows16, _mm512_set1_epi32(r)), &cb[0][0], 4));
  }
  _tile_release();
  return whole;
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
// G floats; scores: G * n floats of scratch. amx: step 1 on AMX tiles (ScoresAmx) for the whole
// blocks of 16 keys, the rest as below.
template <int G, int W>
R1_TARGET void Group(bool amx, const uint16_t* q, const uint16_t* kc, const uint16_t* vc, int64_t row_stride,
                     const int64_t* slots, int64_t n, float scale, int64_t D, float* acc_out, float* m_out,
                     float* l_out, float* scores) {
  const int64_t first = amx ? ScoresAmx(G, q, kc, row_stride, slots, n, D, scores) : 0;
  for (int64_t j = first; j < n; ++j) {
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
R1_TARGET void GroupAnySize(int g, bool amx, const uint16_t* q, const uint16_t* kc, const uint16_t* vc, int64_t row_stride,
                            const int64_t* slots, int64_t n, float scale, int64_t D, float* acc, float* m,
                            float* l, float* scores) {
  const bool wide = D % 64 == 0;
  switch (g) {
#define R1_GROUP_CASE(G)                                                                            \
  case G:                                                                                           \
    return wide ? Group<G, (G <= 6 ? 4 : 2)>(amx, q, kc, vc, row_stride, slots, n, scale, D, acc, m, l, scores) \
                : Group<G, 2>(amx, q, kc, vc, row_stride, slots, n, scale, D, acc, m, l, scores);
    R1_GROUP_CASE(1) R1_GROUP_CASE(2) R1_GROUP_CASE(3) R1_GROUP_CASE(4)
    R1_GROUP_CASE(5) R1_GROUP_CASE(6) R1_GROUP_CASE(7) R1_GROUP_CASE(8)
#undef R1_GROUP_CASE
  }
}


// Prefill attention: n new queries (a prompt chunk) over their context, read from the cache.
// The rows of one KV head are its (query, head) pairs, query-major; a unit of work is a block
// of 16 * NV of them, which goes over the keys it can see in blocks of kKeyBlock, flash-style:
//   1. S^T = K Q^T for the block's keys: each key's K row broadcast pair by pair straight from
//      the cache against Q packed as [D/2][rows] pairs (vdpbf16ps), so that a vector holds one
//      key's scores for 16 rows and the softmax below runs down the keys without shuffles;
//   2. per row, ATen's roundings of the scores (bmm's bf16 output, then the scaled bf16 value),
//      the causal mask, the running max m and sum l, and P = exp(s - m) rounded to bf16, stored
//      as pairs of keys [keys/2][rows];
//   3. O = O * exp(m_old - m) + P V, with V packed per key block as pairs of keys [keys/2][D],
//      so each product is again one vdpbf16ps with P's pair broadcast.
// At the end O / l, rounded once to bf16.
constexpr int64_t kKeyBlock = 64;
constexpr int kScoreKeys = 4;  // keys per step of the score tile
constexpr int kOutRows = 4;    // rows per step of the P V tile
constexpr int kTileVecs = 4;   // vectors of 16 rows per step of the score tile

// The step of both products: acc[i][j] += Σ_t vecs[t * vstride + 16 j ..] . pair(bc[i][t * bstride]),
// vdpbf16ps with one 32-bit pair broadcast against a vector of 16 pairs: for S^T the vectors are
// Q's rows and the pairs a key's dimensions; for O the vectors are V's columns and the pairs P's
// two keys of a row.
template <int I, int J>
R1_TARGET inline void PairTile(const uint32_t* vecs, int64_t vstride, const uint32_t* const* bc, int64_t bstride,
                               int64_t steps, __m512 (&acc)[I][J]) {
  for (int64_t t = 0; t < steps; ++t) {
    __m512bh vv[J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) vv[j] = (__m512bh)_mm512_loadu_si512(vecs + t * vstride + 16 * j);
#pragma GCC unroll 4
    for (int i = 0; i < I; ++i) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(static_cast<int>(bc[i][t * bstride]));
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], vv[j], b);
    }
  }
}

// st[k * rb + 16 v + lane] = Σ_d q[row][d] * k_k[d] for KR keys (rows: the 16 * NV of this tile).
template <int KR, int NV>
R1_TARGET inline void ScoreTile(const uint32_t* qp, int64_t rb, const uint32_t* const* krows, int64_t dpairs,
                                float* st) {
  __m512 acc[KR][NV];
#pragma GCC unroll 4
  for (int k = 0; k < KR; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[k][v] = _mm512_setzero_ps();
  PairTile<KR, NV>(qp, rb, krows, 1, dpairs, acc);
#pragma GCC unroll 4
  for (int k = 0; k < KR; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(st + k * rb + 16 * v, acc[k][v]);
}

// o[r][d0 + ..] = o[r] * alpha[r] + Σ_pairs P[r][pair] . V[pair][d], for RR rows and 16 * W
// columns; pp: [pairs][rb] pairs of P, vp: [pairs][D] pairs of V.
template <int RR, int W>
R1_TARGET inline void OutTile(const uint32_t* pp, int64_t rb, const uint32_t* vp, int64_t D, int64_t pairs,
                              const float* alpha, float* o) {
  __m512 acc[RR][W];
  const uint32_t* rows[RR];
#pragma GCC unroll 4
  for (int r = 0; r < RR; ++r) {
    rows[r] = pp + r;
    const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 8
    for (int w = 0; w < W; ++w) acc[r][w] = _mm512_mul_ps(_mm512_loadu_ps(o + r * D + 16 * w), a);
  }
  PairTile<RR, W>(vp, D, rows, rb, pairs, acc);
#pragma GCC unroll 4
  for (int r = 0; r < RR; ++r)
#pragma GCC unroll 8
    for (int w = 0; w < W; ++w) _mm512_storeu_ps(o + r * D + 16 * w, acc[r][w]);
}

// Two bf16 rows a and b (32 values each) interleaved: lo = a0 b0 a1 b1 .. a15 b15, hi the rest.
R1_TARGET inline void Interleave(__m512i a, __m512i b, __m512i* lo, __m512i* hi) {
  alignas(64) static constexpr uint16_t kLo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                   8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static constexpr uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                   24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  *lo = _mm512_permutex2var_epi16(a, _mm512_load_si512(kLo), b);
  *hi = _mm512_permutex2var_epi16(a, _mm512_load_si512(kHi), b);
}

// Scratch of one thread for blocks of rb rows.
struct PrefillScratch {
  std::vector<uint32_t> qp;  // [D/2][rb] Q pairs
  std::vector<float> st;     // [kKeyBlock][rb] scores
  std::vector<uint32_t> pp;  // [kKeyBlock/2][rb] P pairs
  std::vector<uint32_t> vp;  // [kKeyBlock/2][D] V pairs
  std::vector<float> o, m, l, alpha;  // [rb][D], [rb] x 3
  std::vector<int32_t> pos;           // [rb] each row's position
  // AMX: O^T [D][rb], V^T pairs [D][kKeyBlock / 2], K rows of 16 keys [D / 32][16][32].
  std::vector<float> ot;
  std::vector<uint32_t> vt;
  std::vector<uint16_t> kbuf;
};

struct PrefillProblem {
  const uint16_t *q, *kc, *vc;  // q: [n, heads, D]; caches: [slots, kvh, D]
  uint16_t* out;                // [n, heads, D]
  const int64_t* slots;         // ctx cache rows
  int64_t n, heads, kvh, D, num_cached;
  float scale;
  bool amx = false;  // both products on AMX tiles (AmxReady, D <= 256)
};

// The prefill block's two products on AMX tiles (PrefillProblem::amx). Every tile is 16 rows of
// 64 bytes: tile 0 the float sums, tile 1 A, tile 2 B.
R1_AMX_TARGET void PrefillAmxConfig() {
  alignas(64) uint8_t cfg[64] = {};
  cfg[0] = 1;
  for (int t = 0; t < 3; ++t) {
    cfg[48 + t] = 16;
    cfg[16 + 2 * t] = 64;
  }
  LoadTileConfig(cfg);
}
R1_AMX_TARGET void AmxRelease() { _tile_release(); }

// Scores of 16 keys against the block's rb = 16 nv rows: st[k * rb + row] (k < 16) = K[k] . q[row],
// A = the keys' K rows (32 dimensions a tile; from the cache when the slots are one run, else
// copied into kbuf, [D / 32][16][32]), B = the rows' Q pairs as PrefillBlock packs them
// ([D / 2][rb]: 16 pairs by 16 rows a tile), C = 16 keys by 16 rows.
R1_AMX_TARGET void PrefillScoresAmx(const uint16_t* kc, int64_t row_stride, int64_t kv_off, const int64_t* slots,
                                    const uint32_t* qp, int64_t rb, int nv, int64_t D, float* st, uint16_t* kbuf) {
  bool run = true;
  for (int i = 1; i < 16; ++i) run = run && slots[i] == slots[0] + i;
  const int chunks = static_cast<int>(D / 32);
  if (!run)
    for (int c = 0; c < chunks; ++c)
      for (int i = 0; i < 16; ++i)
        _mm512_storeu_si512(kbuf + (c * 16 + i) * 32, _mm512_loadu_si512(kc + slots[i] * row_stride + kv_off + 32 * c));
  for (int v = 0; v < nv; ++v) {
    _tile_zero(0);
    for (int c = 0; c < chunks; ++c) {
      if (run) R1_TILE_LOAD(1, kc + slots[0] * row_stride + kv_off + 32 * c, row_stride * 2);
      else R1_TILE_LOAD(1, kbuf + c * 16 * 32, 64);
      R1_TILE_LOAD(2, qp + c * 16 * rb + 16 * v, rb * 4);
      _tile_dpbf16ps(0, 1, 2);
    }
    _tile_stored(0, st + 16 * v, rb * 4);
  }
}

// O^T = O^T * alpha + V^T P for one block of keys, with O^T [D][rb] floats (a row per
// dimension, so that each row's rescale by alpha is a vector product along it): A = V's pairs
// transposed (vt, [D][32]: dimension d's 32 pairs of keys, made here from vp [pairs][D]), B =
// P's pairs as the softmax stores them ([pairs][rb]), C = 16 dimensions by 16 rows. The pairs
// past `pairs`, up to a multiple of 16, are zeroed in pp and vt.
R1_AMX_TARGET void PrefillPvAmx(float* ot, const float* alpha, uint32_t* pp, const uint32_t* vp, uint32_t* vt,
                                int64_t pairs, int64_t rb, int nv, int64_t D) {
  const int64_t padded = (pairs + 15) / 16 * 16;
  for (int64_t jp = pairs; jp < padded; ++jp) std::fill(pp + jp * rb, pp + (jp + 1) * rb, 0u);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(D)));
  for (int64_t pb = 0; pb < padded; pb += 16) {
    const __mmask16 live = static_cast<__mmask16>(pairs - pb >= 16 ? 0xffff : (1u << (pairs - pb)) - 1);
    for (int64_t d = 0; d < D; ++d)
      _mm512_storeu_si512(vt + d * 32 + pb,
                          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, vp + pb * D + d, 4));
  }
  for (int64_t d = 0; d < D; ++d)
    for (int v = 0; v < nv; ++v)
      _mm512_storeu_ps(ot + d * rb + 16 * v,
                       _mm512_mul_ps(_mm512_loadu_ps(ot + d * rb + 16 * v), _mm512_loadu_ps(alpha + 16 * v)));
  for (int64_t dt = 0; dt < D / 16; ++dt)
    for (int v = 0; v < nv; ++v) {
      float* c = ot + dt * 16 * rb + 16 * v;
      R1_TILE_LOAD(0, c, rb * 4);
      for (int64_t ks = 0; ks < padded / 16; ++ks) {
        R1_TILE_LOAD(1, vt + dt * 16 * 32 + ks * 16, 32 * 4);
        R1_TILE_LOAD(2, pp + ks * 16 * rb + 16 * v, rb * 4);
        _tile_dpbf16ps(0, 1, 2);
      }
      _tile_stored(0, c, rb * 4);
    }
}

// One block of rows [r0, r0 + rows) of KV head kv, rows padded to rb = 16 * NV.
template <int NV>
R1_TARGET void PrefillBlock(const PrefillProblem& p, int64_t kv, int64_t r0, int64_t rows, PrefillScratch& s) {
  constexpr int64_t rb = 16 * NV;
  const int64_t D = p.D, g = p.heads / p.kvh, dpairs = D / 2, row_stride = p.kvh * D;
  const int64_t nrows = p.n * g;
  // Q pairs of the block's rows (zeros past the last), and each row's position.
  const uint32_t* q32 = reinterpret_cast<const uint32_t*>(p.q);
  for (int64_t r = 0; r < rb; ++r) {
    const int64_t row = r0 + r;
    const int64_t qi = row < nrows ? row / g : p.n - 1;
    s.pos[static_cast<size_t>(r)] = static_cast<int32_t>(p.num_cached + qi);
    const uint32_t* src = q32 + (qi * p.heads + kv * g + row % g) * dpairs;
    for (int64_t dp = 0; dp < dpairs; ++dp) s.qp[static_cast<size_t>(dp * rb + r)] = row < nrows ? src[dp] : 0u;
    s.m[static_cast<size_t>(r)] = -INFINITY;
    s.l[static_cast<size_t>(r)] = 0.f;
  }
  std::fill(s.o.begin(), s.o.begin() + rb * D, 0.f);
  if (p.amx) {
    std::fill(s.ot.begin(), s.ot.begin() + rb * D, 0.f);
    PrefillAmxConfig();
  }
  const int64_t first_pos = s.pos[0], last_pos = s.pos[static_cast<size_t>(rb - 1)];
  const int64_t keys = last_pos + 1;  // the keys any row of the block sees
  const __m512 sv = _mm512_set1_ps(p.scale);
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  alignas(64) static constexpr uint16_t kPairIdx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                        8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pair_idx = _mm512_load_si512(kPairIdx);
  const uint32_t* krows[kScoreKeys];
  for (int64_t j0 = 0; j0 < keys; j0 += kKeyBlock) {
    const int64_t nk = std::min(kKeyBlock, keys - j0), pairs = (nk + 1) / 2;
    // The next block's K and V rows, asked for while this one is computed.
    for (int64_t k = j0 + kKeyBlock; k < std::min(keys, j0 + 2 * kKeyBlock); ++k) {
      Prefetch(p.kc + p.slots[k] * row_stride + kv * D, 2 * D);
      Prefetch(p.vc + p.slots[k] * row_stride + kv * D, 2 * D);
    }
    // 1. Scores.
    int64_t j = 0;
    if (p.amx)
      for (; j + 16 <= nk; j += 16)
        PrefillScoresAmx(p.kc, row_stride, kv * D, p.slots + j0 + j, s.qp.data(), rb, NV, D, s.st.data() + j * rb,
                         s.kbuf.data());
    for (; j + kScoreKeys <= nk; j += kScoreKeys) {
      for (int k = 0; k < kScoreKeys; ++k)
        krows[k] = reinterpret_cast<const uint32_t*>(p.kc + p.slots[j0 + j + k] * row_stride + kv * D);
      for (int v0 = 0; v0 < NV; v0 += kTileVecs)
        ScoreTile<kScoreKeys, std::min(NV, kTileVecs)>(s.qp.data() + 16 * v0, rb, krows, dpairs, s.st.data() + j * rb + 16 * v0);
    }
    for (; j < nk; ++j) {
      krows[0] = reinterpret_cast<const uint32_t*>(p.kc + p.slots[j0 + j] * row_stride + kv * D);
      for (int v0 = 0; v0 < NV; v0 += kTileVecs)
        ScoreTile<1, std::min(NV, kTileVecs)>(s.qp.data() + 16 * v0, rb, krows, dpairs, s.st.data() + j * rb + 16 * v0);
    }
    // V of the block as pairs of keys (a zero row past an odd end).
    for (int64_t jp = 0; jp < pairs; ++jp) {
      const uint16_t* a = p.vc + p.slots[j0 + 2 * jp] * row_stride + kv * D;
      const uint16_t* b = 2 * jp + 1 < nk ? p.vc + p.slots[j0 + 2 * jp + 1] * row_stride + kv * D : nullptr;
      for (int64_t d = 0; d < D; d += 32) {
        __m512i lo, hi;
        Interleave(_mm512_loadu_si512(a + d), b ? _mm512_loadu_si512(b + d) : _mm512_setzero_si512(), &lo, &hi);
        _mm512_storeu_si512(s.vp.data() + jp * D + d, lo);
        _mm512_storeu_si512(s.vp.data() + jp * D + d + 16, hi);
      }
    }
    // 2. Softmax: the block's max, the rescale of what came before, P as bf16 pairs.
    const bool masked = j0 + nk - 1 > first_pos;  // some key of the block is after some row
    for (int v = 0; v < NV; ++v) {
      float* sc = s.st.data() + 16 * v;
      const __m512i pos = _mm512_loadu_si512(s.pos.data() + 16 * v);
      const __m512 m_old = _mm512_loadu_ps(s.m.data() + 16 * v);
      __m512 mx = m_old;
      for (int64_t k = 0; k < nk; ++k) {
        __m512 x = RoundBf16(_mm512_mul_ps(RoundBf16(_mm512_loadu_ps(sc + k * rb)), sv));
        if (masked) x = _mm512_mask_mov_ps(x, _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(static_cast<int>(j0 + k)), pos), ninf);
        _mm512_storeu_ps(sc + k * rb, x);
        mx = _mm512_max_ps(mx, x);
      }
      // mx is finite: every row sees key 0 in the first block, and m_old after it.
      const __m512 alpha = ExpNonPositive(_mm512_sub_ps(m_old, mx));
      __m512 l = _mm512_mul_ps(_mm512_loadu_ps(s.l.data() + 16 * v), alpha);
      _mm512_storeu_ps(s.alpha.data() + 16 * v, alpha);
      _mm512_storeu_ps(s.m.data() + 16 * v, mx);
      for (int64_t jp = 0; jp < pairs; ++jp) {
        const int64_t k = 2 * jp;
        const __m512 s0 = _mm512_loadu_ps(sc + k * rb);
        const __m512 s1 = k + 1 < nk ? _mm512_loadu_ps(sc + (k + 1) * rb) : ninf;
        // exp(-inf - m) is Cephes' smallest value, not 0: masked keys are zeroed.
        const __m512 e0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s0, ninf, _CMP_NEQ_OQ), ExpNonPositive(_mm512_sub_ps(s0, mx)));
        const __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s1, ninf, _CMP_NEQ_OQ), ExpNonPositive(_mm512_sub_ps(s1, mx)));
        l = _mm512_add_ps(l, _mm512_add_ps(e0, e1));
        const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);  // e0 in the low half
        _mm512_storeu_si512(s.pp.data() + jp * rb + 16 * v, _mm512_permutexvar_epi16(pair_idx, both));
      }
      _mm512_storeu_ps(s.l.data() + 16 * v, l);
    }
    // 3. O = O * alpha + P V.
    if (p.amx) {
      PrefillPvAmx(s.ot.data(), s.alpha.data(), s.pp.data(), s.vp.data(), s.vt.data(), pairs, rb, NV, D);
      continue;
    }
    for (int64_t r = 0; r < rb; r += kOutRows)
      for (int64_t d0 = 0; d0 < D; d0 += (D % 64 == 0 ? 64 : 32)) {
        const uint32_t* pp = s.pp.data() + r;
        const uint32_t* vp = s.vp.data() + d0;
        float* o = s.o.data() + r * D + d0;
        if (D % 64 == 0) OutTile<kOutRows, 4>(pp, rb, vp, D, pairs, s.alpha.data() + r, o);
        else OutTile<kOutRows, 2>(pp, rb, vp, D, pairs, s.alpha.data() + r, o);
      }
  }
  // O / l, rounded once.
  if (p.amx) {
    AmxRelease();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = r0 + r, qi = row / g;
      uint16_t* dst = p.out + (qi * p.heads + kv * g + row % g) * D;
      const float inv = 1.f / s.l[static_cast<size_t>(r)];
      for (int64_t d = 0; d < D; ++d) dst[d] = c10::BFloat16(s.ot[static_cast<size_t>(d * rb + r)] * inv).x;
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = r0 + r, qi = row / g;
    uint16_t* dst = p.out + (qi * p.heads + kv * g + row % g) * D;
    const __m512 inv = _mm512_set1_ps(1.f / s.l[static_cast<size_t>(r)]);
    for (int64_t d = 0; d < D; d += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + d),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(s.o.data() + r * D + d), inv)));
  }
}
}  // namespace

bool DecodeAttentionApplies(const at::Tensor& q, const at::Tensor& k_cache) {
  return CpuGemmAvailable() && q.device().is_cpu() && q.scalar_type() == at::kBFloat16 &&
         k_cache.scalar_type() == at::kBFloat16 && q.dim() == 3 && q.size(0) == 1 &&
         q.size(2) % 32 == 0 && k_cache.dim() == 3 && k_cache.is_contiguous() &&
         q.size(1) % k_cache.size(1) == 0;
}

bool DecodeAttentionAmx() { return AmxReady(); }

at::Tensor DecodeAttention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const std::vector<int64_t>& slots, double scale, bool amx) {
  amx = amx && AmxReady();
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
          GroupAnySize(n, amx, qp + h0 * D, kp + kv * D, vp + kv * D, row, slots.data() + j0, std::min(kChunkKeys, ctx - j0),
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

bool PrefillAttentionApplies(const at::Tensor& q, const at::Tensor& k_cache) {
  return CpuGemmAvailable() && q.device().is_cpu() && q.scalar_type() == at::kBFloat16 &&
         k_cache.scalar_type() == at::kBFloat16 && q.dim() == 3 && q.size(2) % 32 == 0 && k_cache.dim() == 3 &&
         k_cache.is_contiguous() && k_cache.size(2) == q.size(2) && q.size(1) % k_cache.size(1) == 0;
}

at::Tensor PrefillAttention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const std::vector<int64_t>& slots, int64_t num_cached, double scale, bool amx) {
  at::Tensor qc = q.contiguous();
  const int64_t n = qc.size(0), heads = qc.size(1), D = qc.size(2), kvh = k_cache.size(1), g = heads / kvh;
  TORCH_CHECK(static_cast<int64_t>(slots.size()) == num_cached + n, "PrefillAttention: ", slots.size(),
              " slots for ", num_cached, " cached and ", n, " new tokens");
  at::Tensor out = at::empty({n, heads, D}, qc.options());
  PrefillProblem p{reinterpret_cast<const uint16_t*>(qc.data_ptr()), reinterpret_cast<const uint16_t*>(k_cache.data_ptr()),
                   reinterpret_cast<const uint16_t*>(v_cache.data_ptr()), reinterpret_cast<uint16_t*>(out.data_ptr()),
                   slots.data(), n, heads, kvh, D, num_cached, static_cast<float>(scale)};
  p.amx = amx && AmxReady() && D <= 256;
  // Blocks of 128 rows where there are that many: each key's K and V are read once for 128 rows
  // (against 64: 0.59-0.60 of the matmul rate at 16k of context -> 0.67-0.72; 192 rows left
  // too few blocks to share at 4k). A short chunk gets smaller blocks, whose padding rows would
  // be computed for nothing.
  const int64_t nrows = n * g;
  const int nv = nrows > 64 ? 8 : nrows > 32 ? 4 : nrows > 16 ? 2 : 1;
  const int64_t rb = 16 * nv, per_kv = (nrows + rb - 1) / rb, units = kvh * per_kv;
  std::atomic<int64_t> next{0};
  ParallelRun([&](int) {
    PrefillScratch s;
    s.qp.resize(static_cast<size_t>(D / 2 * rb));
    s.st.resize(static_cast<size_t>(kKeyBlock * rb));
    s.pp.resize(static_cast<size_t>(kKeyBlock / 2 * rb));
    s.vp.resize(static_cast<size_t>(kKeyBlock / 2 * D));
    s.o.resize(static_cast<size_t>(rb * D));
    s.m.resize(static_cast<size_t>(rb));
    s.l.resize(static_cast<size_t>(rb));
    s.alpha.resize(static_cast<size_t>(rb));
    s.pos.resize(static_cast<size_t>(rb));
    if (p.amx) {
      s.ot.resize(static_cast<size_t>(D * rb));
      s.vt.resize(static_cast<size_t>(D * kKeyBlock / 2));
      s.kbuf.resize(static_cast<size_t>(D / 32 * 16 * 32));
    }
    for (int64_t u; (u = next.fetch_add(1)) < units;) {
      // The last rows first: they see the most keys, so the work left at the end is small.
      const int64_t blk = per_kv - 1 - u / kvh, kv = u % kvh, r0 = blk * rb;
      const int64_t rows = std::min(rb, nrows - r0);
      if (nv == 8) PrefillBlock<8>(p, kv, r0, rows, s);
      else if (nv == 4) PrefillBlock<4>(p, kv, r0, rows, s);
      else if (nv == 2) PrefillBlock<2>(p, kv, r0, rows, s);
      else PrefillBlock<1>(p, kv, r0, rows, s);
    }
  });
  return out;
}

#else

bool DecodeAttentionApplies(const at::Tensor&, const at::Tensor&) { return false; }
bool DecodeAttentionAmx() { return false; }
at::Tensor DecodeAttention(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const std::vector<int64_t>&, double, bool) {
  TORCH_CHECK(false, "DecodeAttention: not built for this CPU");
}

bool PrefillAttentionApplies(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor PrefillAttention(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::vector<int64_t>&,
                            int64_t, double, bool) {
  TORCH_CHECK(false, "PrefillAttention: not built for this CPU");
}

#endif

}  // namespace r1::model
