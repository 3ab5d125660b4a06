// The gateway's Prometheus metrics (prefix r1_gateway_), served on GET /metrics of the API
// port, or on --metrics-listen's own port.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace r1::gw {

class WorkerPool;

class GatewayMetrics {
 public:
  GatewayMetrics();
  void Request(const std::string& route, unsigned code) {
    requests_.Add({{"route", route}, {"code", std::to_string(code)}}).Increment();
  }
  void Rejected(const std::string& reason) { rejected_.Add({{"reason", reason}}).Increment(); }
  void Attempt(const std::string& worker) { attempts_.Add({{"worker", worker}}).Increment(); }
  void Retry(const std::string& reason) { retries_.Add({{"reason", reason}}).Increment(); }
  void Resume(const std::string& reason) { resumes_.Add({{"reason", reason}}).Increment(); }
  void TimeToFirstToken(double s) { ttft_->Observe(s); }
  void EndToEnd(double s) { e2e_->Observe(s); }
  // Where the open-connections gauge reads its value (the HTTP server's count).
  void SetConnectionCount(std::function<int64_t()> count) { connection_count_ = std::move(count); }
  // Refreshes the per-worker gauges from the pool, and the connection gauge.
  void Refresh(const WorkerPool& pool);
  // Text exposition, refreshed first.
  std::string Serialize(const WorkerPool& pool);
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  std::mutex refresh_mu_;  // one refresh at a time brings the counters up to date
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Counter>& attempts_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& resumes_;
  prometheus::Family<prometheus::Counter>& ejections_;
  prometheus::Family<prometheus::Counter>& suspects_;
  prometheus::Family<prometheus::Gauge>& panic_;
  prometheus::Family<prometheus::Histogram>& ttft_family_;
  prometheus::Family<prometheus::Histogram>& e2e_family_;
  prometheus::Family<prometheus::Gauge>& active_streams_;
  prometheus::Family<prometheus::Gauge>& breaker_state_;
  prometheus::Family<prometheus::Gauge>& worker_healthy_;
  prometheus::Gauge& open_connections_;
  std::function<int64_t()> connection_count_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* e2e_;
};

}  // namespace r1::gw
