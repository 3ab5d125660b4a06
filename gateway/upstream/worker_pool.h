// The workers behind the gateway: a static list (--workers) plus the addresses of a DNS name
// re-resolved periodically (a Kubernetes headless service). A HealthChecker polls each worker's
// grpc.health.v1 Check and Inference.GetLoad, concurrently and each on its own schedule; load
// reports feed the breakers (memory pressure: busy) and routing (running, waiting, KV use).
// A worker that fails --suspect-after-failed-checks polls in a row (stopped, hung: its engine
// watchdog says NOT_SERVING, or gone) is suspect: the attempts on it hear at once, so that
// they retry or resume elsewhere instead of waiting for their own timeouts.
//
// Pick() routes (routing.h) among healthy workers whose breaker lets a request through, unless
// fewer than --panic-threshold percent of the healthy workers are left once the ejected ones
// (breakers opened by failures) are taken out: then, as in Envoy's panic mode, ejections are
// ignored and every healthy worker that is not busy may be picked. Workers failing their health
// checks are never picked (unlike Envoy): they are dead, stopped or hung, and would cost a
// timeout each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/clock.h"
#include "common/random.h"
#include "common/status.h"
#include "gateway/upstream/circuit_breaker.h"
#include "gateway/upstream/health_checker.h"
#include "gateway/upstream/prefix_index.h"
#include "gateway/upstream/routing.h"
#include "gateway/upstream/worker_channel.h"
#include "gateway/upstream/worker_lease.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::gw {

// Each Generate stream's HTTP/2 window by default (PoolOptions::stream_window_bytes).
inline constexpr int kDefaultStreamWindowBytes = 1024;

class Worker {
 public:
  // stream_window_bytes: the HTTP/2 flow-control window of each Generate stream, what a
  // worker may send ahead of what the gateway read (PoolOptions::stream_window_bytes).
  Worker(std::string address, BreakerOptions breaker, const Clock* clock,
         const ChannelSecurity& security = {},
         int stream_window_bytes = kDefaultStreamWindowBytes,
         EjectionGate* gate = nullptr);
  const std::string& address() const { return address_; }
  r1serve::v1::Inference::Stub* stub() { return stub_.get(); }
  grpc::health::v1::Health::Stub* health_stub() { return health_.get(); }
  CircuitBreaker& breaker() { return breaker_; }
  PrefixIndex& prefix_index() { return prefix_index_; }

  // Sequences in flight through this gateway: a Generate call counts its n choices.
  std::atomic<int64_t> active{0};
  std::atomic<bool> healthy{false};
  std::atomic<bool> removed{false};  // gone from DNS: no new requests
  std::atomic<int> failed_checks{0};  // health polls failed in a row
  bool outage_logged = false;  // the health checker's: why it is unhealthy was logged

  // The latest load report, and `active` when it arrived (routing brings it up to date).
  void SetLoad(const r1serve::v1::LoadReport& report);
  bool GetLoad(r1serve::v1::LoadReport* report, int64_t* active_then = nullptr) const;
  // True when the latest load report names `model` (a worker serves one model).
  bool Serves(const std::string& model) const;

  // Attempts running on this worker listen for it turning suspect. Listeners run on the
  // health checker's thread and must not block.
  using SuspectFn = std::function<void()>;
  uint64_t AddSuspectListener(SuspectFn fn);
  void RemoveSuspectListener(uint64_t id);
  // Unhealthy until a health poll passes again, its prefix index forgotten, and every
  // listener told.
  void MarkSuspect();
  uint64_t suspect_count() const { return suspect_count_; }

 private:
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<r1serve::v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  CircuitBreaker breaker_;
  PrefixIndex prefix_index_;
  mutable std::mutex mu_;
  r1serve::v1::LoadReport load_;
  bool has_load_ = false;
  int64_t active_at_load_ = 0;
  std::map<uint64_t, SuspectFn> listeners_;
  uint64_t next_listener_ = 1;
  std::atomic<uint64_t> suspect_count_{0};
};

struct PoolOptions {
  std::vector<std::string> static_workers;  // HOST:PORT
  std::string dns_name;                     // NAME:PORT, empty for none
  double dns_refresh_s = 10;
  int health_interval_ms = 1000;
  int health_timeout_ms = 1000;
  int suspect_after_failed_checks = 2;
  double memory_threshold = 0.90;  // of device_memory_total_bytes
  BreakerOptions breaker;
  double max_ejection_percent = 50;
  double panic_threshold_percent = 50;
  RoutingOptions routing;
  ChannelSecurity security;  // TLS and token for the worker channels
  // Each Generate stream's HTTP/2 window: what a worker may send that the gateway has not
  // read. Fixed (no BDP probing), so that a paused stream (a client that stopped reading)
  // holds at most this much in the gateway, and the worker's writes then wait.
  int stream_window_bytes = kDefaultStreamWindowBytes;
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

  // Routes a request (routing.h) among usable workers that serve `model` (by their load
  // reports; empty: any), preferring ones not in `tried`; takes a lease on the worker picked
  // (an active stream and the breaker's permission). `key` is the prompt as prefix-aware
  // routing sees it (may be null); `resume`: only workers whose load report says they continue
  // resumed streams. The lease counts `sequences` (the call's choices). Empty when none is
  // usable.
  std::optional<WorkerLease> Pick(const std::vector<const Worker*>& tried,
                                  const RouteKey* key = nullptr, bool resume = false,
                                  const std::string& model = "", int64_t sequences = 1);
  std::vector<std::shared_ptr<Worker>> Snapshot() const;
  bool AnyHealthy() const;
  // Some worker is healthy but every healthy one has an open breaker.
  bool AllBreakersOpen() const;
  // Fewer than --panic-threshold percent of the healthy workers are not ejected: ejections
  // are ignored.
  bool InPanic() const;
  // Model ids from the latest load reports.
  std::vector<std::string> ModelIds() const;
  // The latest load report of a healthy worker serving each model, by model id.
  std::vector<r1serve::v1::LoadReport> ModelReports() const;
  // Polls every worker now (tests and startup).
  void PollOnce();
  // Adds a worker by hand, outside --workers and DNS, marked healthy and serving `model`
  // (unit tests that run the pool without Start()).
  std::shared_ptr<Worker> AddForTest(const std::string& address, const std::string& model = "m");
  const PoolOptions& options() const { return options_; }
  // Applies one health poll's result (the health checker's callback; public for tests).
  void ApplyPoll(Worker& w, const PollResult& r);

 private:
  void SetAddresses(const std::vector<std::string>& dns_addresses);
  void DnsLoop();
  RouteCandidate CandidateFor(Worker& w, const RouteKey* key) const;
  std::vector<std::shared_ptr<Worker>> Healthy() const;
  bool PanicAmong(const std::vector<std::shared_ptr<Worker>>& healthy) const;

  const PoolOptions options_;
  const Clock* clock_;
  Random* random_;
  EjectionGate gate_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Worker>> workers_;
  HealthChecker checker_;
  std::thread dns_thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

// Resolves "NAME:PORT" into "IP:PORT" strings (IPv6 as [IP]:PORT), sorted and unique.
absl::StatusOr<std::vector<std::string>> ResolveHostPort(const std::string& name_port);

}  // namespace r1::gw
