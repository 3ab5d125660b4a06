// The engine's one handle on the device: the model, its KV cache, how a step's tokens are
// sampled, and what the device can do. The engine asks it (traits()) rather than asking which
// device it is: nothing above this layer branches on CPU or CUDA.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/engine/sampler.h"
#include "worker/model/device_memory.h"
#include "worker/model/kernel_tuning.h"
#include "worker/model/qwen2.h"

namespace r1::engine {

// What the device path does, declared by the runner.
struct RunnerTraits {
  // Forward() returns once the step is queued on the device, before it is computed: the
  // engine delivers the previous step's tokens while the device works. False: Forward()
  // computes the step before it returns (the CPU), and a step delivers its own tokens at once.
  bool computes_async = false;
  // Sampling runs where the logits are and only ids cross to the host (SampleBatchOnDevice);
  // false: the logits come to the host and the C++ sampler runs (faster on the CPU).
  bool samples_on_device = false;
  // Device memory figures are real (load reports, metrics, KV sizing from free memory).
  bool reports_device_memory = false;
  // Tokens per step when --prefill-chunk is 0: what keeps this device's matmuls efficient
  // without holding decodes back long (512 on the CPU, 2,048 on CUDA).
  int32_t default_prefill_chunk = 512;
};

struct RunnerOptions {
  std::string model_dir;
  model::LoadOptions load;
  // Bytes for the KV cache. 0: on a device that reports its memory, kv_cache_fraction of the
  // memory free once the model is loaded; elsewhere kDefaultCpuKvCacheMemory.
  int64_t kv_cache_memory = 0;
  double kv_cache_fraction = 0.9;
  std::string kv_cache_dtype = "auto";  // auto (the model's dtype) or fp8 (e4m3 with scales)
  int32_t block_size = 16;
  const Clock* clock = SystemClock::Get();  // for the memory figures' refresh
};

class ModelRunner {
 public:
  // Loads the model, sizes and allocates the KV cache. Errors say which flag to change.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(const RunnerOptions& options);

  const RunnerTraits& traits() const { return traits_; }
  const model::ModelConfig& config() const { return model_->config(); }
  std::string device_name() const { return model_->device().str(); }
  int64_t num_blocks() const { return cache_->num_blocks(); }
  int32_t block_size() const { return static_cast<int32_t>(cache_->block_size()); }
  int64_t kv_cache_bytes() const { return kv_cache_bytes_; }
  bool fp8_kv_cache() const { return cache_->fp8(); }

  // One model step: float32 logits of the sequences that want them (see Qwen2Model::Forward).
  absl::StatusOr<at::Tensor> Forward(const model::StepBatch& batch);
  // One token per row of `logits`, on the device or the host as traits() says.
  absl::StatusOr<std::vector<SampleResult>> Sample(const at::Tensor& logits,
                                                   const std::vector<const SamplingOptions*>& options,
                                                   const std::vector<SamplerState*>& states);
  // The first steps a server meets (Qwen2Model::WarmUp). Not fatal to the caller.
  absl::Status WarmUp(int64_t max_batch, int64_t max_tokens, int64_t max_context);
  // Device memory, read again at most every kRefreshMs. Thread-safe.
  model::DeviceMemory Memory() const;
  static constexpr int kRefreshMs = 250;

 private:
  explicit ModelRunner(const Clock* clock) : clock_(clock) {}

  std::unique_ptr<model::Qwen2Model> model_;
  std::unique_ptr<model::KvCache> cache_;
  RunnerTraits traits_;
  int64_t kv_cache_bytes_ = 0;
  mutable std::mutex memory_mu_;
  mutable model::DeviceMemory memory_;
  const Clock* clock_;
  mutable Clock::TimePoint memory_read_at_{};
};

}  // namespace r1::engine
