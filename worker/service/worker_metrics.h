// The worker's Prometheus metrics (prefix r1_worker_), on one prometheus-cpp registry.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>

#include "worker/engine/engine.h"
#include "worker/service/memory_report.h"

namespace r1::service {

struct WorkerMetrics {
  WorkerMetrics();

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Histogram* time_to_first_token = nullptr;
  prometheus::Histogram* inter_token_latency = nullptr;
  prometheus::Histogram* e2e_latency = nullptr;
  prometheus::Histogram* queue_time = nullptr;
  prometheus::Gauge* running = nullptr;
  prometheus::Gauge* waiting = nullptr;
  prometheus::Gauge* kv_cache_usage = nullptr;
  prometheus::Gauge* memory_used = nullptr;
  prometheus::Gauge* memory_total = nullptr;
  prometheus::Gauge* memory_allocated = nullptr;
  prometheus::Gauge* memory_reserved = nullptr;
  prometheus::Gauge* kv_cache_bytes = nullptr;
  prometheus::Counter* prompt_tokens = nullptr;
  prometheus::Counter* generation_tokens = nullptr;
  prometheus::Counter* preemptions = nullptr;
  prometheus::Counter* prefix_cache_queries = nullptr;
  prometheus::Counter* prefix_cache_hits = nullptr;
  prometheus::Gauge* engine_stalled = nullptr;  // set by the engine watchdog
  prometheus::Counter* rejected_queue_full = nullptr;
  prometheus::Counter* rejected_invalid = nullptr;
  prometheus::Counter* rejected_draining = nullptr;

  prometheus::Counter& requests(engine::FinishReason reason);

  // Copies the engine's gauges and its counters (preemptions, prefix-cache tokens), and the
  // memory the load report shows (called before each scrape).
  void Update(const engine::EngineLoad& load, ReportedMemory memory);

 private:
  prometheus::Counter* requests_[4] = {};
};

}  // namespace r1::service
