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

#include "worker/model/cuda/launch_rules.h"

typedef struct CUstream_st* cudaStream_t;

namespace r1::model::cuda {

enum class DType { kF32, kF16, kBF16 };

// Programmatic dependent launch (compute capability 9+): each kernel may start while the one
// before it finishes, and waits for it before reading its outputs. On by default; the model's
// KernelTuning::pdl sets it for the process.
void SetProgrammaticLaunch(bool enabled);

// x += delta (when delta != nullptr, rounded to the dtype as an add in that dtype would), then
// out = w * rms_norm(x) exactly as transformers' Qwen2RMSNorm: float32 inside, the normalised
// value rounded to the dtype, times the weight, rounded again.
int AddRmsNorm(DType dt, void* x, const void* delta, const void* w, void* out, int64_t rows,
               int64_t H, float eps, cudaStream_t stream);

// Rotate-half RoPE on every q and k head of each row of qkv in place (cos/sin of
// pos * inv_freq in float32, rounded to the dtype as transformers does), then writes the rotated
// k and the v heads of row t into the caches at slots[t]. With an FP8 cache (fp8_cache) each
// (slot, kv head) row is stored as e4m3 values times a float scale (its largest magnitude /
// 448, so no value saturates): k_scale / v_scale hold [slots, kvh] scales.
struct RopeKvArgs {
  DType dt = DType::kBF16;
  void* qkv = nullptr;
  int64_t ld = 0;
  const int32_t* pos = nullptr;
  const int32_t* slots = nullptr;
  const float* inv_freq = nullptr;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  bool fp8_cache = false;
  float* k_scale = nullptr;
  float* v_scale = nullptr;
  int64_t rows = 0;
  int nh = 0, kvh = 0, D = 0;
};
int RopeKvWrite(const RopeKvArgs& a, cudaStream_t stream);

// Copies the K and V rows at slots[0..n) of the caches into contiguous [n, kvh, D] buffers of
// the model's dtype (dequantizing an FP8 cache): the keys of the sequences that flash attention
// serves. 16-bit dtypes only (flash attention's); kvh * D and D multiples of 8.
struct GatherKvArgs {
  DType dt = DType::kBF16;  // of the outputs (and of the cache unless fp8_cache)
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  bool fp8_cache = false;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  const int32_t* slots = nullptr;
  int64_t n = 0;
  int kvh = 0, D = 0;
  void* k_out = nullptr;
  void* v_out = nullptr;
};
int GatherKv(const GatherKvArgs& a, cudaStream_t stream);

// out[t, i] = silu(gu[t, i]) * gu[t, I + i] (silu rounded to the dtype, then the product).
int SiluMul(DType dt, const void* gu, void* out, int64_t rows, int64_t I, cudaStream_t stream);

// Attention of single query rows over paged keys (decode steps and short prompt chunks).
// Query b is row q_rows[b] of qkv (its nh heads at the start of the row); it attends to keys
// 0 .. q_lens[b] - 1 of the sequence whose block table is tables[q_seq[b] * table_stride ...].
// Writes row q_rows[b] of out ([*, nh D]).
// nsplit > 1 (at most kMaxAttentionSplits) splits each query's keys into nsplit parts (more
// thread blocks when there are few queries; flash-decoding); then `partial` must hold
// n_queries * nh * nsplit * (D + 2) floats, and a second kernel merges the parts.
// Two kernels: for head_dim 128 in bf16/f16 (every R1 distill) a tensor-core kernel that reads
// each KV head once for its whole query group, in 64-key tiles copied into shared memory
// ahead of use (cp.async, double-buffered); for other shapes and float32 a CUDA-core kernel.
struct PagedAttentionArgs {
  DType dt = DType::kBF16;
  const void* qkv = nullptr;
  int64_t ld = 0;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  bool fp8_cache = false;          // e4m3 K/V with per-(slot, kv head) scales
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
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
  bool force_generic = false;  // tests: use the CUDA-core kernel even where the other applies
  int stages = 2;              // tensor-core kernel: tiles in shared memory (2 or 3)
  void* out = nullptr;
  int64_t out_ld = 0;
};
// The most query rows one PagedAttention launch takes (its grid's z-dimension); the model's
// kMaxAttentionQueries (kernel_tuning.h) is asserted equal to it where both are seen.
constexpr int kMaxAttentionQueriesPerLaunch = 65535;

// True when the tensor-core kernel serves this shape.
bool TensorCoreAttention(DType dt, int nh, int kvh, int D);
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
//       kRopeKv    the qkv projection of a decode step: kStore, then what RopeKvWrite does
//                  (a 16-bit cache): RoPE on the q and k heads in y, and k and v written into
//                  the caches at each row's slot (tensor-core GEMV, 16-bit or FP8 weights;
//                  GemvRopeKvApplies)
// W: [N (2 N for kSiluMul), K] row-major. x: [M, ldx]; y: [M, ldy].
enum class GemvOut { kStore, kResidual, kSiluMul, kStoreF32, kRopeKv };
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
  int units = 0;  // CUDA-core kernel: outputs per warp; 0: 8 for N >= 65,536 (the vocabulary), else 1
  // 16-bit weights with K a multiple of 64 (every R1 distill's layers) run on tensor cores, the
  // batch's rows as the MMA's A, a persistent grid streaming W with 16 loads in flight per lane;
  // false (tests, benchmarks) keeps the CUDA-core kernel.
  bool tensor_cores = true;
  // FP8 weights: W holds e4m3 bytes and w_scale one float32 scale per row of W (N, or 2 N for
  // kSiluMul), so that W[n] = q[n] * w_scale[n] (QuantizeFp8Rows). The tensor-core kernel runs
  // them (GemvFp8Supported): x is staged as f16, exact for a bf16 x in f16's normal range.
  const float* w_scale = nullptr;
  // Int4 weights (the layout below): W holds the nibbles, int4_scale and int4_zero the groups'
  // records. The tensor-core kernel runs them (GemvInt4Supported).
  const float* int4_scale = nullptr;
  const uint8_t* int4_zero = nullptr;
  // kRopeKv: row m's position and cache slot, RoPE's inverse frequencies (D / 2), the layer's
  // 16-bit caches ([slots, kvh, D]) and the heads (N = (nh + 2 kvh) D).
  const int32_t* pos = nullptr;
  const int32_t* slots = nullptr;
  const float* inv_freq = nullptr;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  int nh = 0, kvh = 0, D = 0;
};
// The largest M the GEMV takes (KernelTuning's kMaxGemvRows); larger batches use cuBLAS GEMMs.
constexpr int kGemvMaxRows = 8;
// False when the shapes do not suit it (M > kGemvMaxRows, K not a multiple of 16 bytes' worth of
// elements, or the staged rows of x too large for shared memory).
bool GemvSupported(DType dt, int M, int K);
// The same for FP8 weights (w_scale set): a 16-bit dtype, K a multiple of 64.
bool GemvFp8Supported(DType dt, int M, int K);
int Gemv(const GemvArgs& a, cudaStream_t stream);
// True when Gemv takes `a` in kRopeKv mode: the tensor-core GEMV applies, the weights are 16-bit
// or FP8, D a multiple of 16, N = (nh + 2 kvh) D, and the RoPE and cache fields are set.
bool GemvRopeKvApplies(const GemvArgs& a);

// Int4 weights (AWQ checkpoints and --quantization int4 on CUDA): W[n, k] = scale[n, g] *
// (q[n, k] - zero[n, g]) with q and zero in [0, 15] and groups g of 128 columns, held in the
// order the tensor-core GEMV's lanes read them (int4_layout.h converts Int4Groups to it; K a
// multiple of 256, N of 8):
//   q:     uint8 [N, K / 2]. Row n's bytes [128 s, 128 s + 128) hold its columns [256 s, 256 s
//          + 256): byte 64 l + 16 c + 4 w + b (load l, lane c of a quad, word w) is byte b of a
//          little-endian 32-bit word whose nibble i (bits 4 i .. 4 i + 3) is column
//          256 s + 16 (8 l + 2 w + (i % 4) / 2) + 4 c + 2 (i % 2) + i / 4.
//          (So a mask 0x000F000F after a shift of 0, 4, 8 or 12 yields the pairs of columns
//          the MMA's B fragment takes.)
//   scale: float32 [N / 8, K / 256, 8, 2]: [t, s, j, h] is row 8 t + j's scale of group 2 s + h.
//   zero:  uint8, the same shape, its zero points.
bool Int4LayoutSupported(DType dt, int64_t N, int64_t K);
// The GEMV on int4 weights: the layout's shapes, M <= kGemvMaxRows, the rows of x in shared memory.
bool GemvInt4Supported(DType dt, int M, int64_t N, int K);

// out[n, k] = W[n, k] of int4 weights in that layout, rounded to dt (bf16 or f16): for steps too
// large for the GEMV, which then multiply with cuBLAS. out has row stride ldo.
struct DequantInt4Args {
  DType dt = DType::kBF16;
  const void* q = nullptr;
  const float* scale = nullptr;
  const uint8_t* zero = nullptr;
  int64_t N = 0, K = 0;
  void* out = nullptr;
  int64_t ldo = 0;
};
int DequantInt4(const DequantInt4Args& a, cudaStream_t stream);

// Each row of x ([rows, K], row stride ldx, in dtype dt) as e4m3 with one float32 scale:
// scale[r] = max |x[r, :]| / 448 (0 for a row of zeros) and q[r, k] = e4m3(x[r, k] * (448 /
// max)), rounded to nearest even (so |q| <= 448 and nothing saturates). q is [rows, K] with row
// stride ldq. Used for the weights at load (per output channel) and for a step's activations
// (per token) before an FP8 GEMM.
int QuantizeFp8Rows(DType dt, const void* x, int64_t ldx, int64_t rows, int64_t K, void* q,
                    int64_t ldq, float* scale, cudaStream_t stream);

}  // namespace r1::model::cuda
