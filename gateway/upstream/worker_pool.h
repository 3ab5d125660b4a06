// The workers behind the gateway: a static list (--workers) plus the addresses of a DNS name
// re-resolved periodically (a Kubernetes headless service). A background thread polls each
// worker's grpc.health.v1 Check and Inference.GetLoad; load reports showing memory pressure
// open the worker's circuit breaker. Pick() is least connections among healthy workers whose
// breaker lets a request through.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/clock.h"
#include "common/status.h"
#include "common/random.h"
#include "gateway/upstream/circuit_breaker.h"
#include "gateway/upstream/worker_channel.h"
#include "gateway/upstream/worker_lease.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::gw {

class Worker {
 public:
  Worker(std::string address, BreakerOptions breaker, const Clock* clock,
         const ChannelSecurity& security = {});
  const std::string& address() const { return address_; }
  r1serve::v1::Inference::Stub* stub() { return stub_.get(); }
  grpc::health::v1::Health::Stub* health_stub() { return health_.get(); }
  CircuitBreaker& breaker() { return breaker_; }

  std::atomic<int64_t> active{0};  // streams in flight through this gateway
  std::atomic<bool> healthy{false};
  std::atomic<bool> removed{false};  // gone from DNS: no new requests
  bool outage_logged = false;  // the poller thread's: why it is unhealthy was logged

  void SetLoad(const r1serve::v1::LoadReport& report);
  bool GetLoad(r1serve::v1::LoadReport* report) const;
  // True when the latest load report names `model` (a worker serves one model).
  bool Serves(const std::string& model) const;

 private:
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<r1serve::v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  CircuitBreaker breaker_;
  mutable std::mutex mu_;
  r1serve::v1::LoadReport load_;
  bool has_load_ = false;
};

struct PoolOptions {
  std::vector<std::string> static_workers;  // HOST:PORT
  std::string dns_name;                     // NAME:PORT, empty for none
  double dns_refresh_s = 10;
  int health_interval_ms = 1000;
  int health_timeout_ms = 1000;
  double memory_threshold = 0.90;  // of device_memory_total_bytes
  BreakerOptions breaker;
  ChannelSecurity security;  // TLS and token for the worker channels
};

// True when a load report shows pressure: memory above `threshold` of total or KV use above 1.
bool ReportShowsPressure(const r1serve::v1::LoadReport& r, double threshold);

class WorkerPool {
 public:
  WorkerPool(PoolOptions options, const Clock* clock, Random* random);
  ~WorkerPool();

  // Adds the static workers, resolves the DNS name, polls once and starts the poller.
  void Start();
  void Stop();

  // Least connections among usable workers, preferring ones not in `tried`; takes a lease on
  // the worker picked (an active stream and the breaker's permission). Empty when none is
  // usable.
  // Only workers that serve `model` (by their load reports) are candidates; empty: any.
  std::optional<WorkerLease> Pick(const std::vector<const Worker*>& tried,
                                  const std::string& model = "");
  std::vector<std::shared_ptr<Worker>> Snapshot() const;
  bool AnyHealthy() const;
  // Some worker is healthy but every healthy one has an open breaker.
  bool AllBreakersOpen() const;
  // Model ids from the latest load reports.
  std::vector<std::string> ModelIds() const;
  // The latest load report of a healthy worker serving each model, by model id.
  std::vector<r1serve::v1::LoadReport> ModelReports() const;
  // Polls every worker now (tests and startup).
  void PollOnce();
  // Adds a worker by hand, outside --workers and DNS, marked healthy and serving `model`
  // (unit tests that run the pool without Start()).
  std::shared_ptr<Worker> AddForTest(const std::string& address, const std::string& model = "m");

 private:
  void SetAddresses(const std::vector<std::string>& dns_addresses);
  void PollWorker(Worker* w);
  void Loop();

  const PoolOptions options_;
  const Clock* clock_;
  Random* random_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Worker>> workers_;
  std::thread thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

// Resolves "NAME:PORT" into "IP:PORT" strings (IPv6 as [IP]:PORT), sorted and unique.
absl::StatusOr<std::vector<std::string>> ResolveHostPort(const std::string& name_port);

}  // namespace r1::gw
