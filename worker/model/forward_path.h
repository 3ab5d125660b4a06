// A device path of the Qwen2 / Llama step: the code that turns one StepBatch into logits on one kind of
// device. Qwen2Model validates the batch and picks the path at load:
//   - the eager path (qwen2_eager.cc): ATen ops plus our CPU kernels; the CPU's path, and the
//     reference the CUDA path is tested against;
//   - the CUDA path (qwen2_cuda.cc, built only with a CUDA libtorch): our kernels, flash
//     attention for prompt chunks, CUDA graphs for decode steps.
// Both read the same ModelWeights; neither reaches into the other.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "common/status.h"
#include "worker/model/config.h"
#include "worker/model/kernel_tuning.h"
#include "worker/model/kv_cache.h"
#include "worker/model/step_batch.h"
#include "worker/model/weights.h"

namespace r1::model {

class ForwardPath {
 public:
  virtual ~ForwardPath() = default;
  // Writes the new tokens' K/V into `cache`; float32 logits [rows with want_logits, vocab].
  // The batch is already validated. Throws c10::Error on a libtorch failure.
  virtual at::Tensor Forward(const StepBatch& batch, KvCache& cache) = 0;
  // True when Forward can use a KvCache with fp8().
  virtual bool SupportsFp8Cache() const { return false; }
  // Prepares what the first decode steps would otherwise set up (CUDA graphs for every bucket
  // up to max_batch x max_context). Writes K/V into the cache's first blocks.
  virtual absl::Status WarmUpDecode(KvCache& cache, int64_t max_batch, int64_t max_context) {
    (void)cache, (void)max_batch, (void)max_context;
    return absl::OkStatus();
  }
};

struct PathContext {
  const ModelConfig* config = nullptr;
  const ModelWeights* weights = nullptr;
  at::ScalarType dtype = at::kFloat;
  at::Device device{at::kCPU};
  KernelTuning tuning;
};

std::unique_ptr<ForwardPath> MakeEagerPath(const PathContext& ctx);
// Null when this build has no CUDA path or the model's shape is not one our kernels take.
std::unique_ptr<ForwardPath> MakeCudaPath(const PathContext& ctx);

// --quantization fp8 (qwen2_cuda.cc): with `layers`, replaces the layers' floating weights on the
// GPU by e4m3 bytes with one float32 scale per output channel (wqkv, wo, wgate_up, wdown and
// their sqkv, so, sgate_up, sdown; wgate and wup are dropped; an FP8 checkpoint loads them so);
// with `lm_head`, lm_head too (lm_head_scale; a tied head becomes its own tensor, lookups keep
// the embedding). Errors say why the GPU or the shapes do not allow it; an Unimplemented error
// in a build without CUDA.
absl::Status QuantizeWeightsFp8(const ModelConfig& config, ModelWeights& weights, bool layers, bool lm_head);

// Int4 weights on CUDA (qwen2_cuda.cc): moves the layers' Int4Groups (loaded on the CPU) to the
// GPU in the int4 GEMV's layout (int4_layout.h), gate and up stacked into gate_up4. Errors name
// a layer whose shape the layout does not take; an Unimplemented error in a build without CUDA.
absl::Status PrepareInt4Cuda(const ModelConfig& config, ModelWeights& weights);

// Qwen2RMSNorm: in float32, then back to the input dtype, then times the weight.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps);

}  // namespace r1::model
