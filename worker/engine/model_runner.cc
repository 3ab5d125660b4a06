#include "worker/engine/model_runner.h"

#include <c10/util/Exception.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "worker/engine/device_sampler.h"

namespace r1::engine {
namespace {

// The KV cache's bytes: --kv-cache-memory when given; otherwise, where the device reports its
// memory, the fraction of the memory free now that the model is loaded (the caching
// allocator's idle blocks count as free: it hands them out again), and elsewhere the default:
// kDefaultCpuKvCacheMemory, or kDefaultCpuKvCacheTokens tokens when those take more.
absl::StatusOr<int64_t> KvCacheBytes(const RunnerOptions& o, const at::Device& device,
                                     bool reports_memory, int64_t bytes_per_token) {
  if (o.kv_cache_memory > 0) return o.kv_cache_memory;
  if (!reports_memory) {
    const int64_t bytes = DefaultCpuKvCacheBytes(bytes_per_token);
    if (bytes > kDefaultCpuKvCacheMemory) {
      R1_LOG(INFO) << "KV cache: " << kDefaultCpuKvCacheTokens << " tokens of " << bytes_per_token
                   << " bytes (more than the " << kDefaultCpuKvCacheMemory
                   << "-byte default; --kv-cache-memory sets it)";
    }
    return bytes;
  }
  model::DeviceMemory m = model::QueryDeviceMemory(device);
  if (!m.available) {
    return absl::InternalError("cannot read the free memory of " + device.str() +
                               " to size the KV cache: give --kv-cache-memory");
  }
  int64_t free = m.free_bytes + std::max<int64_t>(m.reserved_bytes - m.allocated_bytes, 0);
  int64_t bytes = static_cast<int64_t>(static_cast<double>(free) * o.kv_cache_fraction);
  R1_LOG(INFO) << "KV cache: --kv-cache-fraction " << o.kv_cache_fraction << " of " << free
               << " free bytes on " << device.str() << " (" << m.total_bytes << " in all) = "
               << bytes << " bytes";
  return bytes;
}

absl::StatusOr<bool> ParseKvCacheDtype(const std::string& v, at::ScalarType model_dtype) {
  if (v == "auto" || v == c10::toString(model_dtype)) return false;
  if (v == "fp8" || v == "fp8_e4m3") return true;
  return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtype: '", v,
                                                 "' is not one of auto, fp8 (the model runs in ",
                                                 c10::toString(model_dtype), ")"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const RunnerOptions& o) {
  if (!(o.kv_cache_fraction > 0 && o.kv_cache_fraction <= 1))
    return absl::InvalidArgumentError(absl::StrCat("--kv-cache-fraction must be in (0, 1], got ", o.kv_cache_fraction));
  std::unique_ptr<ModelRunner> r(new ModelRunner(o.clock));
  try {
    R1_ASSIGN_OR_RETURN(r->model_, model::Qwen2Model::Load(o.model_dir, o.load));
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("loading the model: ") + e.what_without_backtrace());
  }
  const at::Device device = r->model_->device();
  if (o.load.dtype == "auto" && device.is_cpu() && r->model_->dtype() == at::kFloat) {
    R1_LOG(INFO) << "--dtype auto: float32, because this CPU has no AVX512-BF16 (bfloat16 would "
                    "run libtorch's fallback, several times slower); --dtype bfloat16 forces it";
  }
  R1_LOG(INFO) << "model weights: " << r->model_->weight_bytes() << " bytes, "
               << c10::toString(r->model_->dtype())
               << (r->model_->quantization() == "none" ? "" : " " + r->model_->QuantizationSummary())
               << " on " << device.str();
  // The CUDA path queues its kernels and returns; sampling there keeps the logits on the GPU.
  // On the CPU a step computes before the call returns, and the C++ sampler is as fast or
  // faster (bench/sampler_bench).
  r->traits_.computes_async = device.is_cuda();
  r->traits_.samples_on_device = device.is_cuda();
  r->traits_.reports_device_memory = device.is_cuda();
  r->traits_.default_prefill_chunk = device.is_cuda() ? 2048 : 512;

  const model::ModelConfig& cfg = r->model_->config();
  R1_ASSIGN_OR_RETURN(bool fp8, ParseKvCacheDtype(o.kv_cache_dtype, r->model_->dtype()));
  const int64_t per_block = model::KvCache::BytesPerBlock(cfg, o.block_size, r->model_->dtype(), fp8);
  R1_ASSIGN_OR_RETURN(int64_t kv_bytes, KvCacheBytes(o, device, r->traits_.reports_device_memory,
                                                     (per_block + o.block_size - 1) / o.block_size));
  const int64_t num_blocks = per_block > 0 ? kv_bytes / per_block : 0;
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a KV cache of ", kv_bytes, " bytes holds no KV block (one block of ", o.block_size,
        " tokens needs ", per_block, " bytes): raise --kv-cache-memory or --kv-cache-fraction"));
  }
  try {
    r->cache_ = std::make_unique<model::KvCache>(cfg, num_blocks, o.block_size, r->model_->dtype(),
                                                 device, fp8);
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(std::string("allocating the KV cache: ") +
                                        e.what_without_backtrace());
  }
  r->kv_cache_bytes_ = num_blocks * per_block;
  if (fp8) {
    // Refuse now, not at the first step, when the device path cannot read an FP8 cache.
    model::StepBatch probe;
    probe.tokens = {0};
    probe.seqs.push_back({0, 1, {0}, true});
    absl::StatusOr<at::Tensor> s = r->model_->Forward(probe, *r->cache_);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtype fp8: ", s.status().message()));
  }
  R1_LOG(INFO) << "KV cache: " << r->kv_cache_bytes_ << " bytes, " << num_blocks << " blocks of "
               << o.block_size << " tokens (" << per_block << " bytes each, "
               << (fp8 ? "fp8 e4m3 with scales" : c10::toString(r->model_->dtype())) << ")";
  return r;
}

absl::StatusOr<at::Tensor> ModelRunner::Forward(const model::StepBatch& batch) {
  return model_->Forward(batch, *cache_);
}

absl::StatusOr<std::vector<SampleResult>> ModelRunner::Sample(
    const at::Tensor& logits, const std::vector<const SamplingOptions*>& options,
    const std::vector<SamplerState*>& states) {
  try {
    return traits_.samples_on_device ? SampleBatchOnDevice(logits, options, states)
                                     : SampleBatch(logits, options, states);
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("sampling failed: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("sampling failed: ") + e.what());
  }
}

absl::Status ModelRunner::WarmUp(int64_t max_batch, int64_t max_tokens, int64_t max_context) {
  try {
    return model_->WarmUp(*cache_, max_batch, max_tokens, max_context);
  } catch (const c10::Error& e) {
    return absl::InternalError(e.what_without_backtrace());
  }
}

model::DeviceMemory ModelRunner::Memory() const {
  if (!traits_.reports_device_memory) return {};
  std::lock_guard<std::mutex> lock(memory_mu_);
  const Clock::TimePoint now = clock_->Now();
  if (memory_read_at_ == Clock::TimePoint{} ||
      now - memory_read_at_ >= std::chrono::milliseconds(kRefreshMs)) {
    memory_ = model::QueryDeviceMemory(model_->device());
    memory_read_at_ = now;
  }
  return memory_;
}

}  // namespace r1::engine
