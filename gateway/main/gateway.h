// The gateway: routes HTTP requests (health, metrics, models, the OpenAI generation routes)
// and runs each generation as an Exchange (exchange.h): its choices fan out into Attempts,
// one Generate call on one worker each (upstream/attempt.h), retried before the first token
// as the RetryPolicy says (upstream/retry_policy.h); the exchange formats what comes back as
// SSE chunks or one JSON body.
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
#include "gateway/main/response_sink.h"
#include "gateway/upstream/attempt.h"
#include "gateway/upstream/generate_call.h"
#include "gateway/upstream/retry_policy.h"
#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

struct GatewayOptions {
  std::vector<std::string> api_keys;  // empty: no authentication
  // Most sequences in flight: a request counts once per choice (n x prompts), since each is a
  // worker stream with its own KV cache.
  int64_t max_concurrent_requests = 1024;
  RetryOptions retry;
  bool metrics_route = true;  // GET /metrics on the API port (off with --metrics-listen)
  bool reasoning_split = true;
  bool ignore_unknown_fields = false;  // log and ignore unknown request fields (vLLM) instead of 400
  double request_timeout_s = 600;     // each attempt's gRPC deadline
  double first_token_timeout_s = 120;  // 0: none
  double stall_timeout_s = 60;         // between messages after the first; 0: none
  int max_resumes = 3;                 // per choice
  int retry_after_s = 1;
};

// What every exchange shares.
struct GatewayContext {
  GatewayContext(GatewayOptions options, WorkerPool* pool, GatewayMetrics* metrics,
                 const Clock* clock, Random* random, StartCallFn start_call);

  const GatewayOptions options;
  WorkerPool* const pool;
  GatewayMetrics* const metrics;
  const Clock* const clock;
  Random* const random;
  // Generation requests in flight: admission (--max-concurrent-requests), draining and the
  // retry budget all read this one counter.
  std::atomic<int64_t> active_requests{0};
  RetryPolicy retry;
  AttemptEnv attempt_env;  // what every attempt shares: the clock, the call starter, timeouts
  std::atomic<int64_t> active_sequences{0};  // released when an exchange is destroyed
  std::atomic<bool> draining{false};  // after SIGTERM: /readyz says 503

 private:
  Clock::Duration WithinDeadline(double timeout_s) const;
};

// Seconds since the Unix epoch on `clock`'s calendar (OpenAI's "created").
int64_t UnixSeconds(const Clock& clock);

class Gateway {
 public:
  Gateway(GatewayOptions options, WorkerPool* pool, GatewayMetrics* metrics, const Clock* clock,
          Random* random, StartCallFn start_call = StartGenerateCall);
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
void SendError(GatewayContext* ctx, ResponseSink& sink, const std::string& route,
               unsigned status, std::string_view type, std::string_view message,
               std::string_view param = "", std::string_view code = "",
               const http::Headers& extra = {});

}  // namespace r1::gw
