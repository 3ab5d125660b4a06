// Engine::Create: checks the options, loads the model and sizes its KV cache (ModelRunner),
// settles the model length, then starts the engine thread (engine.cc).
#include <algorithm>
#include <climits>

#include "common/log.h"
#include "worker/engine/engine.h"
#include "worker/engine/engine_internal.h"

namespace r1::engine {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  R1_RETURN_IF_ERROR(ValidateEngineOptions(options));
  RunnerOptions ro;
  ro.model_dir = options.model_dir;
  ro.load.device = options.device;
  ro.load.dtype = options.dtype;
  ro.load.quantization = options.quantization;
  ro.load.int8_lm_head = options.int8_lm_head;
  ro.load.fp8_lm_head = options.fp8_lm_head;
  ro.load.int4_group_size = options.int4_group_size;
  ro.load.num_threads = options.threads;
  ro.load.tuning = options.tuning;
  ro.kv_cache_memory = options.kv_cache_memory;
  ro.kv_cache_fraction = options.kv_cache_fraction;
  ro.kv_cache_dtype = options.kv_cache_dtype;
  ro.block_size = options.block_size;
  ro.clock = options.clock;
  R1_LOG(INFO) << "kernel tuning: " << options.tuning.Describe();
  R1_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(ro));

  // The model length: the flag, the model's own limit, and what the whole cache holds (so a
  // lone sequence always fits and preemption always ends).
  const model::ModelConfig& cfg = runner->config();
  int64_t max_len = options.max_model_len > 0 ? options.max_model_len : cfg.max_position_embeddings;
  if (cfg.max_position_embeddings > 0) max_len = std::min(max_len, cfg.max_position_embeddings);
  max_len = std::min<int64_t>(max_len, runner->num_blocks() * runner->block_size());
  max_len = std::min<int64_t>(max_len, INT32_MAX);
  EngineOptions resolved = options;
  if (resolved.prefill_chunk == 0) resolved.prefill_chunk = runner->traits().default_prefill_chunk;
  R1_LOG(INFO) << "max model length " << max_len << ", prefill chunk " << resolved.prefill_chunk
               << " tokens a step, prefix caching " << (options.enable_prefix_caching ? "on" : "off");
  return StartEngine(resolved, std::move(runner), static_cast<int32_t>(max_len));
}

}  // namespace r1::engine
