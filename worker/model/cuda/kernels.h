// CUDA kernels for the Qwen2 step (kernels.cu). Plain pointers and a stream, no torch types, so
// that kernels.cu compiles with nvcc alone; qwen2_cuda.cc calls them with tensors' data.
// Every launcher returns the launch's cudaError_t (cudaSuccess when it went in).
//
// Layouts (row-major, contiguous unless a stride is given):
//   x, h:   [T, H] the residual stream and its normalised copy
//   qkv:    [T, ld] with ld >= (nh + 2 kvh) D: q heads, then k heads, then v heads
//   k/v cache: [slots, kvh, D]; position p of a sequence lives in slot
//           table[p / block_size] * block_size + p % block_size
#pragma once

#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace r1::model::cuda {

enum class DType { kF32, kF16, kBF16 };

// x += delta (when delta != nullptr, rounded to the dtype as an add in that dtype would), then
// out = w * rms_norm(x) exactly as transformers' Qwen2RMSNorm: float32 inside, the normalised
// value rounded to the dtype, times the weight, rounded again.
int AddRmsNorm(DType dt, void* x, const void* delta, const void* w, void* out, int64_t rows,
               int64_t H, float eps, cudaStream_t stream);

// Rotate-half RoPE on every q and k head of each row of qkv in place (cos/sin of
// pos * inv_freq in float32, rounded to the dtype as transformers does), then writes the rotated
// k and the v heads of row t into the caches at slots[t].
int RopeKvWrite(DType dt, void* qkv, int64_t ld, const int32_t* pos, const int32_t* slots,
                const float* inv_freq, void* k_cache, void* v_cache, int64_t rows, int nh,
                int kvh, int D, cudaStream_t stream);

// out[t, i] = silu(gu[t, i]) * gu[t, I + i] (silu rounded to the dtype, then the product).
int SiluMul(DType dt, const void* gu, void* out, int64_t rows, int64_t I, cudaStream_t stream);

// Attention of single query rows over paged keys. Query b is row q_rows[b] of qkv (its nh heads
// at the start of the row); it attends to keys 0 .. q_lens[b] - 1 of the sequence whose block
// table is tables[q_seq[b] * table_stride ...]. Writes row q_rows[b] of out ([*, nh D]).
// nsplit > 1 splits each query's keys into nsplit parts (more thread blocks when there are few
// queries; flash-decoding); then `partial` must hold n_queries * nh * nsplit * (D + 2) floats
// and `counters` n_queries * kvh ints that are zero (the kernel leaves them zero again).
struct PagedAttentionArgs {
  DType dt = DType::kBF16;
  const void* qkv = nullptr;
  int64_t ld = 0;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  const int32_t* q_rows = nullptr;
  const int32_t* q_lens = nullptr;
  const int32_t* q_seq = nullptr;
  const int32_t* tables = nullptr;
  int64_t table_stride = 0;
  int block_size = 16;
  int n_queries = 0;
  int nh = 0, kvh = 0, D = 0;
  float scale = 1.f;
  int nsplit = 1;
  float* partial = nullptr;
  int* counters = nullptr;
  int keys = 0;  // keys a warp loads at once: 1 or 4; 0: 1 (R1_ATTN_KEYS=4 changes it)
  void* out = nullptr;
  int64_t out_ld = 0;
};
// False when the shape is not one the kernel is built for (D > 256 or nh / kvh > 8); the caller
// then uses another path.
bool PagedAttentionSupported(int nh, int kvh, int D);
int PagedAttention(const PagedAttentionArgs& a, cudaStream_t stream);

// y = x W^T for a few rows of x (a decode step's batch): a memory-bound GEMV that streams W once
// with 16-byte loads, with the step's neighbouring ops fused in:
//   - prologue (norm_w != nullptr): x is first replaced by Qwen2RMSNorm(x) * norm_w (as
//     AddRmsNorm computes it), so no separate norm kernel runs;
//   - epilogue, by mode:
//       kStore     y[m, n] = x.W[n] + bias[n] (rounded once; bias may be null)
//       kResidual  y[m, n] += x.W[n] (the product rounded to the dtype, then the add): the
//                  residual add of o_proj and down_proj
//       kSiluMul   W holds 2 N rows (gate, then up): y[m, n] = silu(x.W[n]) * x.W[N + n]
//       kStoreF32  like kStore into a float32 y (the logits)
// W: [N (2 N for kSiluMul), K] row-major. x: [M, ldx]; y: [M, ldy].
enum class GemvOut { kStore, kResidual, kSiluMul, kStoreF32 };
struct GemvArgs {
  DType dt = DType::kBF16;
  const void* x = nullptr;
  int64_t ldx = 0;
  int M = 0;
  int K = 0;
  const void* norm_w = nullptr;
  float eps = 1e-6f;
  const void* w = nullptr;
  int64_t N = 0;
  const void* bias = nullptr;
  void* y = nullptr;
  int64_t ldy = 0;
  GemvOut mode = GemvOut::kStore;
  int units = 0;  // outputs per warp; 0: 8 for N >= 65,536 (the vocabulary), else 1
};
// The largest M the GEMV takes; larger batches use cuBLAS GEMMs.
constexpr int kGemvMaxRows = 8;
// False when the shapes do not suit it (M > kGemvMaxRows, K not a multiple of 16 bytes' worth of
// elements, or the staged rows of x too large for shared memory).
bool GemvSupported(DType dt, int M, int K);
int Gemv(const GemvArgs& a, cudaStream_t stream);

}  // namespace r1::model::cuda
