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
               const ChannelSecurity& security)
    : address_(std::move(address)), breaker_(breaker, clock) {
  grpc::ChannelArguments args;
  // A worker that comes back is found again quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // the gateway decides about retries
  channel_ = MakeWorkerChannel(address_, security, args);
  stub_ = r1serve::v1::Inference::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
}

void Worker::SetLoad(const r1serve::v1::LoadReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  load_ = report;
  has_load_ = true;
}

bool Worker::GetLoad(r1serve::v1::LoadReport* report) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (has_load_) *report = load_;
  return has_load_;
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
    : options_(std::move(options)), clock_(clock), random_(random) {}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  SetAddresses({});
  PollOnce();
  thread_ = std::thread([this] { Loop(); });
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
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
    workers_.push_back(std::make_shared<Worker>(a, options_.breaker, clock_, options_.security));
  }
}

void WorkerPool::PollWorker(Worker* w) {
  const Clock::WallTime deadline =
      clock_->WallNow() + std::chrono::milliseconds(options_.health_timeout_ms);
  grpc::ClientContext hctx;
  hctx.set_deadline(deadline);
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  grpc::Status hs = w->health_stub()->Check(&hctx, hreq, &hresp);
  bool healthy = hs.ok() && hresp.status() == grpc::health::v1::HealthCheckResponse::SERVING;

  grpc::ClientContext lctx;
  lctx.set_deadline(deadline);
  r1serve::v1::LoadRequest lreq;
  r1serve::v1::LoadReport report;
  grpc::Status ls = w->stub()->GetLoad(&lctx, lreq, &report);
  // A worker that wants a token this gateway lacks (--worker-token-file) answers health
  // checks but nothing else.
  if (ls.error_code() == grpc::StatusCode::UNAUTHENTICATED) healthy = false;
  if (ls.ok()) {
    w->SetLoad(report);
    if (report.draining()) healthy = false;
    if (ReportShowsPressure(report, options_.memory_threshold)) {
      if (w->breaker().State() == BreakerState::kClosed) {
        R1_LOG(WARNING) << "worker " << w->address() << " reports memory pressure ("
                        << report.device_memory_used_bytes() << " of "
                        << report.device_memory_total_bytes() << " bytes, KV "
                        << report.kv_blocks_used() << "/" << report.kv_blocks_total()
                        << "): breaker open";
      }
      w->breaker().OnPressure();
    }
  }
  if (healthy != w->healthy.load()) {
    R1_LOG(INFO) << "worker " << w->address() << (healthy ? " healthy" : " unhealthy");
  }
  // Why, once per outage: a TLS or token mismatch otherwise shows only as 503s.
  if (!healthy && !w->outage_logged) {
    const grpc::Status& why = !hs.ok() ? hs : ls;
    R1_LOG(WARNING) << "worker " << w->address() << " not usable: "
                    << (why.ok() ? "not serving" : why.error_message());
  }
  w->outage_logged = !healthy;
  w->healthy = healthy;
}

void WorkerPool::PollOnce() {
  for (auto& w : Snapshot()) PollWorker(w.get());
}

void WorkerPool::Loop() {
  auto next_dns = clock_->Now();
  while (true) {
    if (!options_.dns_name.empty() && clock_->Now() >= next_dns) {
      auto resolved = ResolveHostPort(options_.dns_name);
      if (resolved.ok()) {
        SetAddresses(*resolved);
      } else {
        R1_LOG(WARNING) << "resolving " << options_.dns_name << ": " << resolved.status().message();
      }
      next_dns = clock_->Now() + std::chrono::milliseconds(
                                     static_cast<int64_t>(options_.dns_refresh_s * 1000));
    }
    PollOnce();
    std::unique_lock<std::mutex> lock(stop_mu_);
    if (stop_cv_.wait_for(lock, std::chrono::milliseconds(options_.health_interval_ms),
                          [this] { return stop_; }))
      return;
  }
}

std::optional<WorkerLease> WorkerPool::Pick(const std::vector<const Worker*>& tried,
                                            const std::string& model) {
  std::vector<std::shared_ptr<Worker>> usable = Snapshot();
  // Routing by model comes first: the balancer below only sees workers serving it.
  usable.erase(std::remove_if(usable.begin(), usable.end(),
                              [&model](const std::shared_ptr<Worker>& w) {
                                return w->removed || !w->healthy ||
                                       (!model.empty() && !w->Serves(model)) ||
                                       !w->breaker().CanAcquire();
                              }),
               usable.end());
  // Prefer workers this request has not tried yet.
  std::vector<std::shared_ptr<Worker>> fresh;
  for (auto& w : usable)
    if (std::find(tried.begin(), tried.end(), w.get()) == tried.end()) fresh.push_back(w);
  if (!fresh.empty()) usable.swap(fresh);
  while (!usable.empty()) {
    std::vector<int64_t> loads;
    for (auto& w : usable) loads.push_back(w->active.load());
    int i = PickLeastLoaded(loads, random_);
    if (auto lease = WorkerLease::TryTake(usable[i])) return lease;
    usable.erase(usable.begin() + i);  // lost the half-open probe to another request
  }
  return std::nullopt;
}

std::shared_ptr<Worker> WorkerPool::AddForTest(const std::string& address,
                                              const std::string& model) {
  auto w = std::make_shared<Worker>(address, options_.breaker, clock_);
  w->healthy = true;
  r1serve::v1::LoadReport report;
  report.set_model_id(model);
  w->SetLoad(report);
  std::lock_guard<std::mutex> lock(mu_);
  workers_.push_back(w);
  return w;
}

std::vector<std::shared_ptr<Worker>> WorkerPool::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_;
}

bool WorkerPool::AnyHealthy() const {
  for (auto& w : Snapshot())
    if (w->healthy && !w->removed) return true;
  return false;
}

bool WorkerPool::AllBreakersOpen() const {
  bool any = false;
  for (auto& w : Snapshot()) {
    if (!w->healthy || w->removed) continue;
    any = true;
    if (w->breaker().CanAcquire()) return false;
  }
  return any;
}

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
