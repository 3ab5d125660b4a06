// The Qwen2 decoder in libtorch with a paged KV cache: load a checkpoint, run steps. Llama
// checkpoints run through the same code: the two architectures differ only in configuration
// (config.h: no q/k/v bias, llama3 RoPE frequencies, head_dim), never in a copy of the model.
//
// One Forward() call runs one engine step over a batch of sequences: each contributes some new
// tokens (a prompt chunk, or one token when decoding) and gets back the logits of its last new
// token. Linear layers run once over all new tokens of the batch, so the weights are read once
// per step whatever the batch size. The step itself runs in a device path (forward_path.h):
// the eager ATen path on the CPU, our kernels and CUDA graphs on CUDA.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "worker/model/config.h"
#include "worker/model/kernel_tuning.h"
#include "worker/model/kv_cache.h"
#include "worker/model/step_batch.h"

namespace r1::model {

class ForwardPath;
struct ModelWeights;

struct LoadOptions {
  LoadOptions() = default;
  LoadOptions(std::string device_, std::string dtype_, int num_threads_ = 0)
      : device(std::move(device_)), dtype(std::move(dtype_)), num_threads(num_threads_) {}

  std::string device = "cpu";  // "auto", "cpu", "cuda", "cuda:N"
  std::string dtype = "auto";  // "auto", "bfloat16", "float16", "float32"
  int num_threads = 0;         // CPU threads for libtorch; 0: one per core
  // CPU: copy the weights at load into one anonymous region backed by transparent huge pages
  // (cpu_weights.h) instead of viewing the mapped file.
  bool cpu_copy_weights = false;
  // > 0: read only DIR's config.json and draw random weights with this standard deviation on
  // the device (weights.h RandomWeights): benchmarks of shapes too big for the disk.
  double random_weights_std = 0;
  // "auto": the checkpoint's own format (int8 for an int8 checkpoint, int4 for an AWQ one,
  // else none); "none": floating weights; "int8": int8 linear layers on the CPU (cpu_int8.h),
  // read from an int8 checkpoint or quantized at load; "int4": int4 linear layers on the CPU
  // (cpu_int4.h), converted from an AWQ checkpoint or quantized at load in groups of
  // int4_group_size; "awq": an AWQ checkpoint, as int4; "fp8": e4m3 linear layers on a CUDA
  // GPU with FP8 tensor cores (bfloat16 models), quantized at load per output channel
  // (forward_path.h QuantizeWeightsFp8).
  std::string quantization = "auto";
  int64_t int4_group_size = 128;  // 32, 64 or 128
  // With quantized linear layers: lm_head int8 too (per-row scales, quantized at load: a
  // W8A8 checkpoint keeps it floating). False keeps it in `dtype`, for accuracy.
  bool int8_lm_head = true;
  // With "fp8": lm_head (or a copy of the tied embedding) as e4m3 with per-row scales too.
  // False keeps it in `dtype`, for accuracy.
  bool fp8_lm_head = true;
  KernelTuning tuning;
};

// Parses a --device value; "auto" picks cuda:0 when CUDA is available.
absl::StatusOr<at::Device> ResolveDevice(const std::string& device);
// Parses a --dtype value; "auto" is bfloat16 on CUDA and on CPUs with AVX512-BF16, float32 on
// other CPUs (where bfloat16 runs libtorch's slow fallback).
absl::StatusOr<at::ScalarType> ResolveDtype(const std::string& dtype, at::Device device);
// Resolves a --quantization value against the checkpoint and device: "none", "int8", "int4" or "fp8"
// (what the layers will hold), or an error that says why not.
absl::StatusOr<std::string> ResolveQuantization(const std::string& quantization,
                                                const ModelConfig& cfg, at::Device device);

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
  // step of `max_tokens` prompt tokens (sizes the allocator's caches) and the decode steps the
  // device path prepares (CUDA graphs at batch sizes up to `max_batch` and contexts up to
  // `max_context`). It writes K/V into the cache's first blocks, so call it before any sequence
  // holds blocks. A no-op on CPU.
  absl::Status WarmUp(KvCache& cache, int64_t max_batch, int64_t max_tokens, int64_t max_context);

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const KernelTuning& tuning() const { return tuning_; }
  // "none", "int8", "int4" or "fp8": how the linear layers' weights are held.
  const std::string& quantization() const { return quantization_; }
  // How the weights are held, for the load log: "" without quantization, else e.g. "with int8
  // linear layers (...); lm_head int8, quantized at load from ...".
  std::string QuantizationSummary() const;
  // Bytes of all weights held (for load reports and the batch-1 bound).
  int64_t weight_bytes() const;

 private:
  Qwen2Model() = default;
  absl::Status ValidateBatch(const StepBatch& batch, const KvCache& cache) const;

  ModelConfig config_;
  at::Device device_{at::kCPU};
  at::ScalarType dtype_ = at::kFloat;
  std::string quantization_ = "none";
  KernelTuning tuning_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<ForwardPath> path_;
};

}  // namespace r1::model
