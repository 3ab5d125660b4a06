#include "gateway/main/metrics.h"

#include <prometheus/text_serializer.h>

#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

namespace {
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return b;
}
}  // namespace

GatewayMetrics::GatewayMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("r1_gateway_requests_total")
                    .Help("HTTP requests by route and status code")
                    .Register(*registry_)),
      rejected_(prometheus::BuildCounter()
                    .Name("r1_gateway_rejected_requests_total")
                    .Help("Requests rejected by the gateway, by reason")
                    .Register(*registry_)),
      attempts_(prometheus::BuildCounter()
                    .Name("r1_gateway_upstream_attempts_total")
                    .Help("Generate calls started, by worker")
                    .Register(*registry_)),
      retries_(prometheus::BuildCounter()
                   .Name("r1_gateway_retries_total")
                   .Help("Retries, by the failure that caused them")
                   .Register(*registry_)),
      resumes_(prometheus::BuildCounter()
                   .Name("r1_gateway_stream_resumes_total")
                   .Help("Choices resumed on another worker after output, by the failure that "
                         "caused it; limit_reached counts those --max-resumes refused")
                   .Register(*registry_)),
      ejections_(prometheus::BuildCounter()
                     .Name("r1_gateway_ejections_total")
                     .Help("Times a worker's breaker ejected it for consecutive failures")
                     .Register(*registry_)),
      suspects_(prometheus::BuildCounter()
                    .Name("r1_gateway_worker_suspect_total")
                    .Help("Times a worker failed --suspect-after-failed-checks health checks "
                          "in a row and its attempts were moved elsewhere")
                    .Register(*registry_)),
      panic_(prometheus::BuildGauge()
                 .Name("r1_gateway_panic_mode")
                 .Help("1 while too few workers are left un-ejected and ejections are ignored")
                 .Register(*registry_)),
      ttft_family_(prometheus::BuildHistogram()
                       .Name("r1_gateway_time_to_first_token_seconds")
                       .Help("From request arrival until the first token reached the gateway")
                       .Register(*registry_)),
      e2e_family_(prometheus::BuildHistogram()
                      .Name("r1_gateway_e2e_latency_seconds")
                      .Help("From request arrival until the response was complete")
                      .Register(*registry_)),
      active_streams_(prometheus::BuildGauge()
                          .Name("r1_gateway_active_streams")
                          .Help("Sequences in flight on Generate calls, by worker (a call "
                                "counts its n choices)")
                          .Register(*registry_)),
      breaker_state_(prometheus::BuildGauge()
                         .Name("r1_gateway_breaker_state")
                         .Help("Circuit breaker state by worker: 0 closed, 1 half-open, 2 open")
                         .Register(*registry_)),
      worker_healthy_(prometheus::BuildGauge()
                          .Name("r1_gateway_worker_healthy")
                          .Help("1 when the worker's last health check passed")
                          .Register(*registry_)),
      open_connections_(prometheus::BuildGauge()
                            .Name("r1_gateway_open_connections")
                            .Help("Client connections open, lingering ones included")
                            .Register(*registry_)
                            .Add({})),
      ttft_(&ttft_family_.Add({}, LatencyBuckets())),
      e2e_(&e2e_family_.Add({}, LatencyBuckets())) {
  // Zero series for the usual reasons, so that dashboards see the metric before any resume.
  for (const char* reason : {"unavailable", "internal", "unknown", "stalled", "worker_suspect",
                             "limit_reached"})
    resumes_.Add({{"reason", reason}});
}

namespace {
// Brings a counter up to a total kept elsewhere.
void CatchUp(prometheus::Counter& c, uint64_t total) {
  const double behind = static_cast<double>(total) - c.Value();
  if (behind > 0) c.Increment(behind);
}
}  // namespace

void GatewayMetrics::Refresh(const WorkerPool& pool) {
  std::lock_guard<std::mutex> lock(refresh_mu_);
  for (auto& w : pool.Snapshot()) {
    prometheus::Labels l = {{"worker", w->address()}};
    active_streams_.Add(l).Set(static_cast<double>(w->active.load()));
    breaker_state_.Add(l).Set(static_cast<double>(w->breaker().State()));
    worker_healthy_.Add(l).Set(w->healthy && !w->removed ? 1 : 0);
    CatchUp(ejections_.Add(l), w->breaker().ejections_total());
    CatchUp(suspects_.Add(l), w->suspect_count());
  }
  panic_.Add({}).Set(pool.InPanic() ? 1 : 0);
  if (connection_count_) open_connections_.Set(static_cast<double>(connection_count_()));
}

std::string GatewayMetrics::Serialize(const WorkerPool& pool) {
  Refresh(pool);
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace r1::gw
