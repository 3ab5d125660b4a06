// The Qwen2 decoder in libtorch, one code path for CPU and CUDA, with a paged KV cache.
//
// One Forward() call runs one engine step over a batch of sequences: each contributes some new
// tokens (a prompt chunk, or one token when decoding) and gets back the logits of its last new
// token. Linear layers run once over all new tokens of the batch, so the weights are read once
// per step whatever the batch size.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/model/config.h"

namespace r1::model {

struct LoadOptions {
  std::string device = "cpu";  // "auto", "cpu", "cuda", "cuda:N"
  std::string dtype = "auto";  // "auto", "bfloat16", "float16", "float32"
  int num_threads = 0;         // CPU threads for libtorch; 0: one per core
  // bf16 on CPU: our AVX512-BF16 kernel (cpu_gemm.h) for linear layers with at most 32 rows
  // (decode), libtorch's at::linear otherwise; also the fused gate/up and decode attention
  // (cpu_attention.h). Batch-1 decode of the 1.5B shape on 2 cores: 7.8 tok/s against 5.2 with
  // at::linear for every layer (bench/cpu_model_bench compares both).
  bool cpu_kernels = true;
  // CPU: copy the weights (all but the embedding table) at load into one anonymous region
  // backed by transparent huge pages (cpu_weights.h) instead of viewing the mapped file. Only
  // worth it when the page cache holds the file in small pages: the mapping is advised
  // MADV_HUGEPAGE anyway, and large page-cache folios are mapped 2 MiB at a time.
  bool cpu_copy_weights = false;
  // CUDA: replay captured CUDA graphs for decode steps (every sequence feeding one token).
  bool cuda_graphs = true;
  // CUDA: our fused kernels (worker/model/cuda) and paged attention; false runs the plain ATen
  // step that the CPU runs (a reference for tests and benchmarks; no graphs then).
  bool cuda_kernels = true;
};

// Parses a --device value; "auto" picks cuda:0 when CUDA is available.
absl::StatusOr<at::Device> ResolveDevice(const std::string& device);
// Parses a --dtype value; "auto" is bfloat16 (float32 when bf16 is unsupported).
absl::StatusOr<at::ScalarType> ResolveDtype(const std::string& dtype, at::Device device);

// K and V for every layer in fixed-size blocks: tensors of shape
// [num_blocks * block_size, num_key_value_heads, head_dim]. Position p of a sequence lives at
// row block_table[p / block_size] * block_size + p % block_size.
class KvCache {
 public:
  KvCache(const ModelConfig& cfg, int64_t num_blocks, int64_t block_size, at::ScalarType dtype,
          at::Device device);
  static int64_t BytesPerBlock(const ModelConfig& cfg, int64_t block_size, at::ScalarType dtype);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  at::Tensor& k(int64_t layer) { return k_[layer]; }
  at::Tensor& v(int64_t layer) { return v_[layer]; }

 private:
  int64_t num_blocks_, block_size_;
  std::vector<at::Tensor> k_, v_;
};

// One sequence's part of a step.
struct SequenceStep {
  int64_t num_cached = 0;            // tokens already in the KV cache
  int64_t num_new = 0;               // tokens fed this step (> 0)
  std::vector<int32_t> block_table;  // blocks covering positions [0, num_cached + num_new)
  bool want_logits = true;           // return logits for the last new token
};

struct StepBatch {
  std::vector<int32_t> tokens;     // every sequence's new tokens, concatenated in order
  std::vector<SequenceStep> seqs;
};

class Qwen2Model {
 public:
  // Loads DIR (config.json + safetensors). Errors name the file and tensor at fault.
  static absl::StatusOr<std::unique_ptr<Qwen2Model>> Load(const std::string& dir,
                                                          const LoadOptions& options);
  ~Qwen2Model();

  // Writes the new tokens' K/V into `cache` and returns float32 logits
  // [number of sequences with want_logits, vocab_size], in batch order, on the model's device.
  // Errors (bad batch, a libtorch failure) come back as a Status.
  absl::StatusOr<at::Tensor> Forward(const StepBatch& batch, KvCache& cache);

  // Runs the steps a server meets first, so that no request pays for one-time set-up: one
  // step of `max_tokens` prompt tokens (sizes the allocator's caches) and, on CUDA with graphs,
  // decode steps at batch sizes 1, 2, 4, ... up to `max_batch` and contexts up to
  // `max_context` keys (captures their graphs). It writes K/V into the cache's first blocks, so
  // call it before any sequence holds blocks. A no-op on CPU.
  absl::Status WarmUp(KvCache& cache, int64_t max_batch, int64_t max_tokens, int64_t max_context);

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  // Bytes of all weights held (for load reports and the batch-1 bound).
  int64_t weight_bytes() const;

 private:
  struct Layer;
  struct Weights;
  // The CUDA path's state and code (captured graphs, static buffers, kernel calls); a nested
  // class so that qwen2_cuda.cc can reach the weights.
  struct CudaState;
  Qwen2Model() = default;
  at::Tensor ForwardImpl(const StepBatch& batch, KvCache& cache);
  // The ATen-only step (qwen2.cc): the CPU path, and the reference for the CUDA one.
  at::Tensor EagerForward(const StepBatch& batch, KvCache& cache);
  // The CUDA step (qwen2_cuda.cc, built only with a CUDA libtorch).
  at::Tensor CudaForward(const StepBatch& batch, KvCache& cache);

  ModelConfig config_;
  at::Device device_{at::kCPU};
  at::ScalarType dtype_ = at::kFloat;
  bool cpu_kernels_ = false;
  bool cuda_graphs_ = true;
  bool cuda_kernels_ = true;
  std::shared_ptr<CudaState> cuda_;  // shared_ptr: destroyed where CudaState is complete
  std::shared_ptr<void> keepalive_;  // the mapped checkpoint, when tensors view it
  std::unique_ptr<Weights> weights_;
};

}  // namespace r1::model
