#include "worker/service/worker_metrics.h"

namespace r1::service {
namespace {

prometheus::Histogram::BucketBoundaries Buckets(std::initializer_list<double> b) { return b; }

// Brings a counter up to a total the engine keeps.
void CatchUp(prometheus::Counter* c, int64_t total) {
  const double behind = static_cast<double>(total) - c->Value();
  if (behind > 0) c->Increment(behind);
}

}  // namespace

WorkerMetrics::WorkerMetrics() : registry(std::make_shared<prometheus::Registry>()) {
  using namespace prometheus;
  auto latency = Buckets({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  auto short_latency =
      Buckets({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  time_to_first_token = &BuildHistogram()
                             .Name("r1_worker_time_to_first_token_seconds")
                             .Help("From arrival at the worker to the first generated token")
                             .Register(*registry)
                             .Add({}, latency);
  inter_token_latency = &BuildHistogram()
                             .Name("r1_worker_inter_token_latency_seconds")
                             .Help("Time between two generated tokens of one request")
                             .Register(*registry)
                             .Add({}, short_latency);
  e2e_latency = &BuildHistogram()
                     .Name("r1_worker_e2e_latency_seconds")
                     .Help("From arrival to the last token")
                     .Register(*registry)
                     .Add({}, latency);
  queue_time = &BuildHistogram()
                    .Name("r1_worker_queue_time_seconds")
                    .Help("From arrival until the engine first scheduled the request")
                    .Register(*registry)
                    .Add({}, latency);
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(*registry).Add({});
  };
  running = gauge("r1_worker_running_sequences", "Sequences in the running batch");
  waiting = gauge("r1_worker_waiting_sequences", "Sequences waiting to be scheduled");
  kv_cache_usage = gauge("r1_worker_kv_cache_usage_ratio", "KV-cache blocks in use / all blocks");
  memory_used = gauge("r1_worker_device_memory_used_bytes",
                      "Memory held by live work, as the load report shows it (CUDA: used less "
                      "the KV cache's free blocks; CPU: resident once loaded, less the KV "
                      "cache's free blocks)");
  memory_total = gauge("r1_worker_device_memory_total_bytes",
                       "Device memory in all (CPU: machine memory; or --memory-limit)");
  memory_allocated = gauge("r1_worker_device_memory_allocated_bytes",
                           "CUDA caching allocator: bytes in live tensors (0 on CPU)");
  memory_reserved = gauge("r1_worker_device_memory_reserved_bytes",
                          "CUDA caching allocator: bytes held from the driver (0 on CPU)");
  kv_cache_bytes = gauge("r1_worker_kv_cache_bytes", "Memory of the whole KV cache");
  auto counter = [&](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Register(*registry).Add({});
  };
  prompt_tokens = counter("r1_worker_prompt_tokens_total", "Prompt tokens of finished requests");
  generation_tokens = counter("r1_worker_generation_tokens_total", "Tokens generated");
  preemptions = counter("r1_worker_preemptions_total",
                        "Sequences preempted (KV blocks freed, recomputed later)");
  prefix_cache_queries = counter("r1_worker_prefix_cache_queries_total",
                                 "Tokens looked up in the prefix cache when sequences were admitted");
  prefix_cache_hits = counter("r1_worker_prefix_cache_hits_total",
                              "Of those, tokens found in the prefix cache (their prefill skipped)");
  engine_stalled = gauge("r1_worker_engine_stalled",
                         "1 while the engine thread has work but made no step for "
                         "--engine-stall-timeout (health NOT_SERVING)");
  auto& req = BuildCounter()
                  .Name("r1_worker_requests_total")
                  .Help("Finished requests by finish reason")
                  .Register(*registry);
  requests_[0] = &req.Add({{"finish_reason", "stop"}});
  requests_[1] = &req.Add({{"finish_reason", "length"}});
  requests_[2] = &req.Add({{"finish_reason", "cancelled"}});
  requests_[3] = &req.Add({{"finish_reason", "error"}});
  auto& rej = BuildCounter()
                  .Name("r1_worker_rejected_requests_total")
                  .Help("Requests refused before they started, by reason")
                  .Register(*registry);
  rejected_queue_full = &rej.Add({{"reason", "queue_full"}});
  rejected_invalid = &rej.Add({{"reason", "invalid_argument"}});
  rejected_draining = &rej.Add({{"reason", "draining"}});
}

prometheus::Counter& WorkerMetrics::requests(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStop: return *requests_[0];
    case engine::FinishReason::kLength: return *requests_[1];
    case engine::FinishReason::kCancelled: return *requests_[2];
    default: return *requests_[3];
  }
}

void WorkerMetrics::Update(const engine::EngineLoad& load, ReportedMemory memory) {
  running->Set(load.running);
  waiting->Set(load.waiting);
  kv_cache_usage->Set(load.blocks_total > 0
                          ? static_cast<double>(load.blocks_used) / load.blocks_total
                          : 0.0);
  memory_used->Set(static_cast<double>(memory.used));
  memory_total->Set(static_cast<double>(memory.total));
  memory_allocated->Set(static_cast<double>(load.allocator_allocated));
  memory_reserved->Set(static_cast<double>(load.allocator_reserved));
  kv_cache_bytes->Set(static_cast<double>(load.kv_cache_bytes));
  CatchUp(preemptions, load.preemptions);
  CatchUp(prefix_cache_queries, load.prefix_cache_queries);
  CatchUp(prefix_cache_hits, load.prefix_cache_hits);
}

}  // namespace r1::service
