// The gRPC Inference service on the callback API. Generate validates and tokenizes on the gRPC
// thread, hands the request's n choices to the engine as n sequences (all or none), and streams
// their deltas back on the one call with one write in flight, each message tagged with its
// choice (deltas that arrive meanwhile are merged into that choice's next message; choices
// take turns). Cancellation and deadlines reach every choice's sequence through the sinks'
// shared Cancelled() flag.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/clock.h"
#include "r1serve/v1/inference.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/service/generation_defaults.h"
#include "worker/service/memory_report.h"
#include "worker/service/prompt_codec.h"
#include "worker/service/worker_metrics.h"

namespace r1::grammar {
class GrammarCompiler;
}

namespace r1::service {

struct ServiceOptions {
  std::string model_id;
  int64_t memory_limit = 0;  // > 0: reported as device_memory_total_bytes
  // CPU: the resident memory once the engine was up (memory_report.h); 0: read at construction.
  uint64_t resident_at_start = 0;
  const Clock* clock = SystemClock::Get();  // arrival times and the latency metrics
  GenerationDefaults generation;  // --generation-config: for sampling fields left unset
  // Compiles (and caches) structured outputs; null: they are refused (no tokenizer).
  grammar::GrammarCompiler* compiler = nullptr;
};

class InferenceService final : public r1serve::v1::Inference::CallbackService {
 public:
  InferenceService(engine::Engine* engine, std::shared_ptr<PromptCodec> codec,
                   WorkerMetrics* metrics, ServiceOptions options);

  grpc::ServerWriteReactor<r1serve::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const r1serve::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* context,
                                    const r1serve::v1::LoadRequest* request,
                                    r1serve::v1::LoadReport* report) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const r1serve::v1::TokenizeRequest* request,
                                     r1serve::v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const r1serve::v1::DetokenizeRequest* request,
                                       r1serve::v1::DetokenizeResponse* response) override;

  // New Generate calls get UNAVAILABLE from now on.
  void StartDraining();
  bool draining() const { return draining_.load(); }
  // Generate streams not yet done.
  int active_streams() const { return active_.load(); }
  r1serve::v1::LoadReport MakeLoadReport() const;
  // Refreshes the gauges (before a metrics scrape).
  void UpdateMetrics();

 private:
  engine::Engine* engine_;
  std::shared_ptr<PromptCodec> codec_;
  WorkerMetrics* metrics_;
  ServiceOptions options_;
  std::atomic<bool> draining_{false};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace r1::service
