// How the model's device paths run: typed settings filled from worker flags (r1-worker
// --help lists them; the worker logs them at start) and from the benches' flags. Nothing in
// the model or its kernels reads the environment. Torch-free, so flag parsing needs no torch.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace r1 {
class Flags;
}

namespace r1::model {

// The most query rows one paged-attention launch takes (the kernel's grid z-dimension).
inline constexpr int64_t kMaxAttentionQueries = 65535;
// The largest batch a fused GEMV step takes (rows of x staged in shared memory).
inline constexpr int kMaxGemvRows = 8;

struct KernelTuning {
  // CPU: our kernels. bf16: AVX512-BF16 (cpu_gemm.h, cpu_attention.h) for small-row linear
  // layers, the fused gate/up and decode attention. float32: the row-invariant kernels
  // (cpu_f32.h) for every linear layer, attention, RMSNorm, RoPE tables and SwiGLU, so a token's
  // logits are the same bits however tokens are grouped into steps. false: libtorch's ops
  // (at::linear, at::bmm) everywhere.
  bool cpu_kernels = true;
  // CPU, bf16 with our kernels: on a CPU with AMX-BF16 (Intel Sapphire Rapids and later), the
  // attention's products on AMX tiles (decode: the scores; prefill: the scores and P V); false:
  // AVX512-BF16 only.
  bool cpu_amx = true;
  // CUDA: our fused kernels and paged attention; false runs the plain ATen step the CPU runs
  // (a reference for tests and benchmarks; no graphs then).
  bool cuda_kernels = true;
  // CUDA: replay captured CUDA graphs for decode steps.
  bool cuda_graphs = true;
  // CUDA (compute capability 9+): programmatic dependent launch between our kernels.
  bool pdl = true;
  // Decode attention's key splits per (query, KV head); 0: chosen per step from the batch and
  // context (cuda::PagedAttentionSplits: the count with the least modelled time of the launch's
  // waves of resident blocks, at least 2 tiles of 64 keys a split).
  int attn_splits = 0;
  // Decode attention's 64-key tiles in shared memory at once (2 or 3; more in flight, fewer
  // blocks per SM).
  int attn_stages = 2;
  // Prompt chunks with more new tokens than this, and more than flash_min_work query-key pairs
  // (new tokens x context), attend through flash attention over K/V gathered from the cache;
  // the rest through the paged decode kernel, query by query. -1: never flash.
  int64_t flash_min_tokens = 4;
  int64_t flash_min_work = 65536;
  // Steps of at most this many tokens use the fused GEMVs (0: never; at most kMaxGemvRows).
  // -1: the measured best (docs/gpu.md): 1 with 16-bit weights, where cuBLAS is faster from 2
  // rows; 4 with FP8 weights, where the GEMV beats the FP8 GEMMs up to 4 rows.
  int gemv_max_rows = -1;
  // gemv_max_rows resolved for a model with FP8 (fp8) or 16-bit weights.
  int GemvMaxRows(bool fp8) const { return gemv_max_rows >= 0 ? gemv_max_rows : (fp8 ? 4 : 1); }
  // Int4 weights on CUDA: steps of at most this many tokens run the int4 GEMV, 8 rows a launch;
  // larger steps dequantize each layer to 16 bits and multiply with cuBLAS. 0: always the
  // latter. 16: on the H200 two launches beat the dequantized route at 16 rows (4,275 against
  // 3,774 tok/s on the 1.5B), not at 32 (4,675 against 7,143; docs/gpu.md).
  int int4_gemv_max_rows = 16;
  // Outputs per warp of the CUDA-core GEMVs; 0: the kernel's choice.
  int gemv_units = 0;
  // The GEMVs of 16-bit models on tensor cores (the batch's rows as the MMA's A operand); false:
  // the CUDA-core GEMV (for comparison).
  bool gemv_tensor_cores = true;
  // CUDA: steps on the GEMVs apply RoPE and write K/V into a 16-bit cache in the qkv GEMV's
  // epilogue (16-bit or FP8 weights on tensor cores); false: the separate RoPE + KV-write kernel.
  bool gemv_rope = true;

  // InvalidArgument naming the flag when a value is out of range.
  absl::Status Validate() const;
  // One line for the start-up log: "cuda_kernels=1 cuda_graphs=1 ...".
  std::string Describe() const;
};

// The flags of every KernelTuning field (--cpu-kernels ... --gemv-units), one set for r1-worker
// and the benches: registered on `flags` before it parses, read by Get() after. Values beyond
// an int are clamped to its range, so Validate names them instead of a wrapped value.
class KernelTuningFlags {
 public:
  explicit KernelTuningFlags(Flags& flags);
  KernelTuning Get() const;

 private:
  bool *cpu_kernels_, *cpu_amx_, *cuda_kernels_, *cuda_graphs_, *pdl_, *gemv_tensor_cores_, *gemv_rope_;
  int64_t *attn_splits_, *attn_stages_, *flash_min_tokens_, *flash_min_work_, *gemv_max_rows_,
      *gemv_units_, *int4_gemv_max_rows_;
};

}  // namespace r1::model
