// Torch-free definitions for engine.h.
#include "worker/engine/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace r1::engine {

int64_t DefaultCpuKvCacheBytes(int64_t bytes_per_token) {
  return std::max(kDefaultCpuKvCacheMemory, kDefaultCpuKvCacheTokens * std::max<int64_t>(0, bytes_per_token));
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
    case FinishReason::kNone: break;
  }
  return "none";
}

absl::Status ValidateEngineOptions(const EngineOptions& o) {
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (o.model_dir.empty()) return bad("--model is required");
  if (o.threads < 0) return bad("--threads must be >= 0");
  if (o.max_running <= 0) return bad("--max-running must be > 0, got ", o.max_running);
  if (o.max_waiting <= 0) return bad("--max-waiting must be > 0, got ", o.max_waiting);
  if (o.max_model_len < 0) return bad("--max-model-len must be >= 0");
  if (o.kv_cache_memory < 0) return bad("--kv-cache-memory must be >= 0");
  if (!(o.kv_cache_fraction > 0 && o.kv_cache_fraction <= 1))
    return bad("--kv-cache-fraction must be in (0, 1], got ", o.kv_cache_fraction);
  if (o.block_size <= 0 || o.block_size > 4096) return bad("--block-size must be in [1, 4096], got ", o.block_size);
  // A step's prompt tokens can all be paged-attention queries: the kernel's limit.
  if (o.prefill_chunk < 0 || o.prefill_chunk > model::kMaxAttentionQueries)
    return bad("--prefill-chunk must be in [0, ", model::kMaxAttentionQueries, "], got ", o.prefill_chunk);
  if (o.max_wait_steps <= 0) return bad("--max-wait-steps must be > 0, got ", o.max_wait_steps);
  if (o.admit_headroom_tokens < 0)
    return bad("--admit-headroom-tokens must be >= 0, got ", o.admit_headroom_tokens);
  if (o.reasoning.default_budget < -1)
    return bad("--thinking-token-budget must be -1 (no limit) or >= 0, got ", o.reasoning.default_budget);
  return o.tuning.Validate();
}

}  // namespace r1::engine
