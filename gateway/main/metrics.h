// The gateway's Prometheus metrics (prefix r1_gateway_), served on GET /metrics.
#pragma once

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
  // Text exposition, with the per-worker gauges refreshed from the pool.
  std::string Serialize(const WorkerPool& pool);

 private:
  std::mutex serialize_mu_;  // one scrape at a time brings the counters up to date
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
  prometheus::Histogram* ttft_;
  prometheus::Histogram* e2e_;
};

}  // namespace r1::gw
