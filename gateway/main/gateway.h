// The gateway: routes HTTP requests (health, metrics, models, the OpenAI generation routes)
// and runs each generation as an Exchange: pick a worker, stream its Generate call back as
// SSE chunks or one JSON body, retry before the first token, open breakers on failures.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/random.h"
#include "gateway/http/router.h"
#include "gateway/http/session.h"
#include "gateway/main/metrics.h"
#include "gateway/upstream/retry_budget.h"
#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

struct GatewayOptions {
  std::vector<std::string> api_keys;  // empty: no authentication
  // Most sequences in flight: a request counts once per choice (n x prompts), since each is a
  // worker stream with its own KV cache.
  int64_t max_concurrent_requests = 1024;
  bool metrics_route = true;  // GET /metrics on the API port (off with --metrics-listen)
  int max_attempts = 3;
  uint64_t retry_base_ms = 25;
  uint64_t retry_cap_ms = 250;
  double retry_budget_percent = 20;
  uint32_t retry_budget_min = 10;
  bool reasoning_split = true;
  double request_timeout_s = 600;
  int retry_after_s = 1;
};

// What every exchange shares.
struct GatewayContext {
  GatewayOptions options;
  WorkerPool* pool;
  GatewayMetrics* metrics;
  const Clock* clock;
  Random* random;
  RetryBudget budget;
  std::atomic<int64_t> active_requests{0};
  std::atomic<int64_t> active_sequences{0};  // released when an exchange is destroyed
  std::atomic<bool> draining{false};  // after SIGTERM: /readyz says 503
};

class Gateway {
 public:
  Gateway(GatewayOptions options, WorkerPool* pool, GatewayMetrics* metrics, const Clock* clock,
          Random* random);
  // The http::Handler.
  void Handle(const std::shared_ptr<http::Session>& session, http::Request&& request);
  GatewayContext* context() { return &ctx_; }

 private:
  void Generate(const std::shared_ptr<http::Session>& session, http::Request&& request,
                bool chat);

  GatewayContext ctx_;
  http::Router router_;
};

// Sends an OpenAI-shaped error and counts it.
void SendError(GatewayContext* ctx, http::Session& session, const std::string& route,
               unsigned status, std::string_view type, std::string_view message,
               std::string_view param = "", std::string_view code = "",
               const http::Headers& extra = {});

}  // namespace r1::gw
