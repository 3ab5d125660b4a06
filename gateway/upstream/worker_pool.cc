#include "gateway/upstream/worker_pool.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/log.h"
#include "gateway/upstream/balancer.h"

namespace r1::gw {

Worker::Worker(std::string address, BreakerOptions breaker, const Clock* clock,
               const ChannelSecurity& security, int stream_window_bytes, EjectionGate* gate)
    : address_(std::move(address)), breaker_(breaker, clock, gate) {
  grpc::ChannelArguments args;
  // A worker that comes back is found again quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // the gateway decides about retries
  // Output flow control: BDP probing would grow each stream's window to megabytes, all of it
  // buffered in the gateway when a client stops reading.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, stream_window_bytes);
  channel_ = MakeWorkerChannel(address_, security, args);
  stub_ = r1serve::v1::Inference::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
}

void Worker::SetLoad(const r1serve::v1::LoadReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  load_ = report;
  has_load_ = true;
  active_at_load_ = active.load();
}

bool Worker::GetLoad(r1serve::v1::LoadReport* report, int64_t* active_then) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (has_load_) *report = load_;
  if (has_load_ && active_then) *active_then = active_at_load_;
  return has_load_;
}

uint64_t Worker::AddSuspectListener(SuspectFn fn) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(fn));
  return id;
}

void Worker::RemoveSuspectListener(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.erase(id);
}

void Worker::MarkSuspect() {
  healthy = false;
  ++suspect_count_;
  prefix_index_.Clear();  // a worker that comes back may have restarted with an empty cache
  std::vector<SuspectFn> fns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, fn] : listeners_) fns.push_back(fn);
  }
  for (auto& fn : fns) fn();
}

bool Worker::Serves(const std::string& model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return has_load_ && load_.model_id() == model;
}

bool ReportShowsPressure(const r1serve::v1::LoadReport& r, double threshold) {
  if (r.device_memory_total_bytes() > 0 &&
      static_cast<double>(r.device_memory_used_bytes()) >
          threshold * static_cast<double>(r.device_memory_total_bytes()))
    return true;
  return r.kv_blocks_total() > 0 && r.kv_blocks_used() > r.kv_blocks_total();
}

WorkerPool::WorkerPool(PoolOptions options, const Clock* clock, Random* random)
    : options_(std::move(options)),
      clock_(clock),
      random_(random),
      gate_(options_.max_ejection_percent),
      checker_(std::chrono::milliseconds(options_.health_interval_ms),
               std::chrono::milliseconds(options_.health_timeout_ms), clock,
               [this] { return Snapshot(); },
               [this](Worker& w, const PollResult& r) { ApplyPoll(w, r); }) {}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  SetAddresses({});
  PollOnce();
  checker_.Start();
  if (!options_.dns_name.empty()) dns_thread_ = std::thread([this] { DnsLoop(); });
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (dns_thread_.joinable()) dns_thread_.join();
  checker_.Stop();
}

void WorkerPool::SetAddresses(const std::vector<std::string>& dns_addresses) {
  std::set<std::string> want(options_.static_workers.begin(), options_.static_workers.end());
  want.insert(dns_addresses.begin(), dns_addresses.end());
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> have;
  for (auto& w : workers_) {
    bool keep = want.count(w->address()) > 0;
    if (!keep && !w->removed) {
      R1_LOG(INFO) << "worker " << w->address() << " removed";
    }
    if (keep && w->removed) {
      R1_LOG(INFO) << "worker " << w->address() << " back";
    }
    w->removed = !keep;
    have.insert(w->address());
  }
  // Forget removed workers once nothing runs on them.
  workers_.erase(std::remove_if(workers_.begin(), workers_.end(),
                                [](const std::shared_ptr<Worker>& w) {
                                  return w->removed && w->active == 0 && w.use_count() == 1;
                                }),
                 workers_.end());
  for (const std::string& a : want) {
    if (have.count(a)) continue;
    R1_LOG(INFO) << "worker " << a << " added";
    workers_.push_back(std::make_shared<Worker>(a, options_.breaker, clock_, options_.security,
                                                options_.stream_window_bytes, &gate_));
  }
  gate_.SetWorkers(static_cast<int>(workers_.size()));
}

void WorkerPool::ApplyPoll(Worker& w, const PollResult& r) {
  bool healthy = r.serving;
  // A worker that wants a token this gateway lacks (--worker-token-file) answers health
  // checks but nothing else.
  if (r.load_status.error_code() == grpc::StatusCode::UNAUTHENTICATED) healthy = false;
  bool draining = false;
  if (r.load_status.ok()) {
    const r1serve::v1::LoadReport& report = r.report;
    w.SetLoad(report);
    draining = report.draining();
    const bool pressure = ReportShowsPressure(report, options_.memory_threshold);
    if (pressure != w.breaker().busy()) {
      R1_LOG(WARNING) << "worker " << w.address()
                      << (pressure ? " reports" : " no longer reports") << " memory pressure ("
                      << report.device_memory_used_bytes() << " of "
                      << report.device_memory_total_bytes() << " bytes held by live work, KV "
                      << report.kv_blocks_used() << "/" << report.kv_blocks_total()
                      << " blocks)" << (pressure ? ": no new requests until it ends" : "");
    }
    w.breaker().OnLoadReport(pressure);
    const uint64_t block = report.kv_block_size() > 0 ? report.kv_block_size() : 16;
    w.prefix_index().SetCapacity(static_cast<size_t>(report.kv_blocks_total() * block *
                                                     kRouteBytesPerToken / kRouteChunkBytes));
  }
  // A draining worker finishes its streams: unhealthy for new work, not suspect.
  if (draining) healthy = false;
  if (healthy) {
    w.failed_checks = 0;
  } else if (!draining && ++w.failed_checks == options_.suspect_after_failed_checks) {
    const std::string why =
        !r.health_status.ok()
            ? "health check failed: " + std::string(r.health_status.error_message())
            : "health check says NOT_SERVING";
    R1_LOG(WARNING) << "worker " << w.address() << " is suspect after "
                    << options_.suspect_after_failed_checks << " failed health checks (" << why
                    << "): its attempts retry or resume elsewhere";
    w.MarkSuspect();
  }
  if (healthy != w.healthy.load()) {
    R1_LOG(INFO) << "worker " << w.address() << (healthy ? " healthy" : " unhealthy");
  }
  // Why, once per outage: a TLS or token mismatch otherwise shows only as 503s.
  if (!healthy && !w.outage_logged) {
    const grpc::Status& why = !r.health_status.ok() ? r.health_status : r.load_status;
    R1_LOG(WARNING) << "worker " << w.address() << " not usable: "
                    << (why.ok() ? (draining ? "draining" : "not serving") : why.error_message());
  }
  w.outage_logged = !healthy;
  w.healthy = healthy;
}

void WorkerPool::PollOnce() { checker_.PollAllNow(); }

void WorkerPool::DnsLoop() {
  while (true) {
    auto resolved = ResolveHostPort(options_.dns_name);
    if (resolved.ok()) {
      SetAddresses(*resolved);
    } else {
      R1_LOG(WARNING) << "resolving " << options_.dns_name << ": " << resolved.status().message();
    }
    std::unique_lock<std::mutex> lock(stop_mu_);
    if (stop_cv_.wait_for(lock,
                          std::chrono::milliseconds(
                              static_cast<int64_t>(options_.dns_refresh_s * 1000)),
                          [this] { return stop_; }))
      return;
  }
}

RouteCandidate WorkerPool::CandidateFor(Worker& w, const RouteKey* key) const {
  RouteCandidate c;
  c.streams = w.active.load();
  r1serve::v1::LoadReport r;
  if (w.GetLoad(&r, &c.streams_at_report)) {
    c.running = r.running();
    c.waiting = r.waiting();
    if (r.kv_blocks_total() > 0)
      c.kv_usage = static_cast<double>(r.kv_blocks_used()) / static_cast<double>(r.kv_blocks_total());
    if (key && r.prefix_caching() && options_.routing.policy == RoutingPolicy::kPrefixAware)
      c.prefix_chunks = w.prefix_index().Match(*key);
  }
  return c;
}

bool WorkerPool::PanicAmong(const std::vector<std::shared_ptr<Worker>>& healthy) const {
  size_t in = 0;
  for (auto& w : healthy)
    if (!w->breaker().ejected()) ++in;
  return static_cast<double>(in) * 100 <
         options_.panic_threshold_percent * static_cast<double>(healthy.size());
}

std::vector<std::shared_ptr<Worker>> WorkerPool::Healthy() const {
  std::vector<std::shared_ptr<Worker>> out;
  for (auto& w : Snapshot())
    if (w->healthy && !w->removed) out.push_back(w);
  return out;
}

std::optional<WorkerLease> WorkerPool::Pick(const std::vector<const Worker*>& tried,
                                            const RouteKey* key, bool resume,
                                            const std::string& model, int64_t sequences) {
  std::vector<std::shared_ptr<Worker>> usable = Healthy();
  // Routing by model comes first: the balancer below only sees workers serving it.
  if (!model.empty())
    usable.erase(std::remove_if(usable.begin(), usable.end(),
                                [&model](const std::shared_ptr<Worker>& w) { return !w->Serves(model); }),
                 usable.end());
  // Panic: too many healthy workers are ejected for failures; use every healthy one that is
  // not busy, ejected or not, rather than pile the load onto the few left.
  const bool panic = PanicAmong(usable);
  usable.erase(std::remove_if(usable.begin(), usable.end(),
                              [panic, resume](const std::shared_ptr<Worker>& w) {
                                r1serve::v1::LoadReport r;
                                if (resume && !(w->GetLoad(&r) && r.resume())) return true;
                                return panic ? w->breaker().busy() : !w->breaker().CanAcquire();
                              }),
               usable.end());
  // Prefer workers this request has not tried yet.
  std::vector<std::shared_ptr<Worker>> fresh;
  for (auto& w : usable)
    if (std::find(tried.begin(), tried.end(), w.get()) == tried.end()) fresh.push_back(w);
  if (!fresh.empty()) usable.swap(fresh);
  while (!usable.empty()) {
    std::vector<RouteCandidate> candidates;
    for (auto& w : usable) candidates.push_back(CandidateFor(*w, key));
    const int i = ChooseWorker(options_.routing, candidates, random_);
    if (auto lease = WorkerLease::TryTake(usable[i], /*ignore_breaker=*/panic, sequences)) {
      if (key && options_.routing.policy == RoutingPolicy::kPrefixAware)
        usable[i]->prefix_index().Insert(*key);
      return lease;
    }
    usable.erase(usable.begin() + i);  // lost the half-open probe to another request
  }
  return std::nullopt;
}

std::shared_ptr<Worker> WorkerPool::AddForTest(const std::string& address,
                                              const std::string& model) {
  auto w = std::make_shared<Worker>(address, options_.breaker, clock_, options_.security,
                                    options_.stream_window_bytes, &gate_);
  w->healthy = true;
  r1serve::v1::LoadReport report;
  report.set_model_id(model);
  w->SetLoad(report);
  std::lock_guard<std::mutex> lock(mu_);
  workers_.push_back(w);
  gate_.SetWorkers(static_cast<int>(workers_.size()));
  return w;
}

std::vector<std::shared_ptr<Worker>> WorkerPool::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_;
}

bool WorkerPool::AnyHealthy() const { return !Healthy().empty(); }

bool WorkerPool::AllBreakersOpen() const {
  const std::vector<std::shared_ptr<Worker>> healthy = Healthy();
  if (healthy.empty()) return false;
  for (auto& w : healthy)
    if (w->breaker().CanAcquire()) return false;
  return true;
}

bool WorkerPool::InPanic() const { return PanicAmong(Healthy()); }

std::vector<std::string> WorkerPool::ModelIds() const {
  std::set<std::string> ids;
  for (auto& w : Snapshot()) {
    r1serve::v1::LoadReport r;
    if (!w->removed && w->GetLoad(&r) && !r.model_id().empty()) ids.insert(r.model_id());
  }
  return {ids.begin(), ids.end()};
}

std::vector<r1serve::v1::LoadReport> WorkerPool::ModelReports() const {
  std::map<std::string, r1serve::v1::LoadReport> by_id;
  for (auto& w : Snapshot()) {
    r1serve::v1::LoadReport r;
    if (w->removed || !w->GetLoad(&r) || r.model_id().empty()) continue;
    // A healthy worker's report wins over an unhealthy one's.
    if (!by_id.count(r.model_id()) || w->healthy) by_id[r.model_id()] = r;
  }
  std::vector<r1serve::v1::LoadReport> out;
  for (auto& [id, r] : by_id) out.push_back(std::move(r));
  return out;
}

absl::StatusOr<std::vector<std::string>> ResolveHostPort(const std::string& name_port) {
  size_t colon = name_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == name_port.size())
    return absl::InvalidArgumentError("expected NAME:PORT, got '" + name_port + "'");
  std::string host = name_port.substr(0, colon), port = name_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return absl::UnavailableError(std::string("getaddrinfo: ") + gai_strerror(rc));
  std::set<std::string> out;
  for (addrinfo* p = res; p; p = p->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (p->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr, buf, sizeof buf);
      out.insert(std::string(buf) + ":" + port);
    } else if (p->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(p->ai_addr)->sin6_addr, buf,
                sizeof buf);
      std::string a = "[";
      a.append(buf);
      a.append("]:");
      a.append(port);
      out.insert(a);
    }
  }
  freeaddrinfo(res);
  return std::vector<std::string>(out.begin(), out.end());
}

}  // namespace r1::gw
