#include <gtest/gtest.h>

#include <set>

#include "gateway/http/server.h"
#include "gateway/upstream/worker_pool.h"

namespace r1::gw {
namespace {

TEST(WorkerPool, PressureFromLoadReports) {
  r1serve::v1::LoadReport r;
  EXPECT_FALSE(ReportShowsPressure(r, 0.9));  // nothing reported
  r.set_device_memory_total_bytes(1000);
  r.set_device_memory_used_bytes(900);
  EXPECT_FALSE(ReportShowsPressure(r, 0.9));
  r.set_device_memory_used_bytes(901);
  EXPECT_TRUE(ReportShowsPressure(r, 0.9));
  r.set_device_memory_used_bytes(100);
  r.set_kv_blocks_total(10);
  r.set_kv_blocks_used(10);
  EXPECT_FALSE(ReportShowsPressure(r, 0.9));
  r.set_kv_blocks_used(11);
  EXPECT_TRUE(ReportShowsPressure(r, 0.9));
}

TEST(WorkerPool, ResolvesNamesToAddresses) {
  auto a = ResolveHostPort("127.0.0.1:50051");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, std::vector<std::string>{"127.0.0.1:50051"});
  auto l = ResolveHostPort("localhost:7");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_FALSE(l->empty());
  for (const auto& s : *l) EXPECT_TRUE(s == "127.0.0.1:7" || s == "[::1]:7") << s;
  EXPECT_FALSE(ResolveHostPort("no-port").ok());
  EXPECT_FALSE(ResolveHostPort("host:").ok());
  EXPECT_FALSE(ResolveHostPort("does-not-exist.invalid:80").ok());
}

TEST(WorkerPool, UnreachableWorkersAreNotPicked) {
  // Real time: the health polls' gRPC deadlines come from the pool's clock.
  const Clock& clock = *SystemClock::Get();
  SystemRandom random(1);
  PoolOptions o;
  o.static_workers = {"127.0.0.1:1"};  // nothing listens there
  o.health_timeout_ms = 200;
  o.health_interval_ms = 50;
  WorkerPool pool(o, &clock, &random);
  pool.Start();
  EXPECT_FALSE(pool.AnyHealthy());
  EXPECT_FALSE(pool.Pick({}).has_value());
  // Polls go on, each worker on its own schedule: failed checks pile up.
  while (pool.Snapshot()[0]->failed_checks < 3) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(pool.Snapshot().size(), 1u);
  pool.Stop();
}

class PoolTest : public ::testing::Test {
 protected:
  void Init(int n, PoolOptions o = {}) {
    o.breaker.failure_threshold = 1;
    o.breaker.cooldown = std::chrono::seconds(10);
    pool_ = std::make_unique<WorkerPool>(o, &clock_, &random_);
    for (int i = 0; i < n; ++i) w_.push_back(pool_->AddForTest("10.0.0." + std::to_string(i) + ":1"));
  }
  // The worker a request goes to (its lease given back at once).
  Worker* PickOne(const RouteKey* key = nullptr) {
    auto lease = pool_->Pick({}, key);
    return lease ? &lease->worker() : nullptr;
  }
  static PollResult Poll(bool serving, bool draining = false) {
    PollResult r;
    r.serving = serving;
    if (!serving) r.health_status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "timed out");
    r.report.set_draining(draining);
    r.report.set_kv_blocks_total(100);
    r.report.set_kv_block_size(16);
    r.report.set_prefix_caching(true);
    return r;
  }

  FakeClock clock_;
  FakeRandom random_{0};
  std::unique_ptr<WorkerPool> pool_;
  std::vector<std::shared_ptr<Worker>> w_;
};

TEST_F(PoolTest, FailedChecksInARowMakeAWorkerSuspect) {
  Init(2);
  int heard = 0;
  w_[0]->AddSuspectListener([&] { ++heard; });
  pool_->ApplyPoll(*w_[0], Poll(false));
  EXPECT_FALSE(w_[0]->healthy);  // no new requests
  EXPECT_EQ(heard, 0);           // one failed poll: the attempts keep going
  pool_->ApplyPoll(*w_[0], Poll(true));
  EXPECT_TRUE(w_[0]->healthy);
  pool_->ApplyPoll(*w_[0], Poll(false));
  pool_->ApplyPoll(*w_[0], Poll(false));  // --suspect-after-failed-checks 2
  EXPECT_EQ(heard, 1);
  EXPECT_EQ(w_[0]->suspect_count(), 1u);
  pool_->ApplyPoll(*w_[0], Poll(false));  // told once per spell
  EXPECT_EQ(heard, 1);
  // NOT_SERVING (the worker's engine watchdog) counts as failing; draining does not.
  PollResult not_serving = Poll(true);
  not_serving.serving = false;
  pool_->ApplyPoll(*w_[1], not_serving);
  pool_->ApplyPoll(*w_[1], not_serving);
  EXPECT_EQ(w_[1]->suspect_count(), 1u);
  pool_->ApplyPoll(*w_[1], Poll(true));
  for (int i = 0; i < 5; ++i) pool_->ApplyPoll(*w_[1], Poll(false, /*draining=*/true));
  EXPECT_FALSE(w_[1]->healthy);
  EXPECT_EQ(w_[1]->suspect_count(), 1u);
}

TEST_F(PoolTest, PressureMakesAWorkerBusyUntilAReportShowsNone) {
  Init(2);
  PollResult r = Poll(true);
  r.report.set_device_memory_total_bytes(1000);
  r.report.set_device_memory_used_bytes(950);
  pool_->ApplyPoll(*w_[0], r);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(PickOne(), w_[1].get());
  r.report.set_device_memory_used_bytes(100);
  pool_->ApplyPoll(*w_[0], r);
  EXPECT_EQ(w_[0]->breaker().State(), BreakerState::kClosed);
  EXPECT_EQ(PickOne(), w_[1].get());  // ties go to the last one (FakeRandom 0)
  auto held = pool_->Pick({});        // one stream on w1: w0 is now less loaded
  EXPECT_EQ(PickOne(), w_[0].get());
}

TEST_F(PoolTest, PanicModeUsesEjectedWorkersWhenTooFewAreLeft) {
  PoolOptions o;
  o.max_ejection_percent = 100;
  o.panic_threshold_percent = 50;
  Init(4, o);
  w_[0]->breaker().OnFailure();
  w_[1]->breaker().OnFailure();  // 2 of 4 out: 50% left, not below the threshold
  EXPECT_FALSE(pool_->InPanic());
  std::vector<std::optional<WorkerLease>> held;
  for (int i = 0; i < 6; ++i) {
    held.push_back(pool_->Pick({}));
    ASSERT_TRUE(held.back());
    EXPECT_TRUE(&held.back()->worker() == w_[2].get() || &held.back()->worker() == w_[3].get());
  }
  w_[2]->breaker().OnFailure();  // 3 of 4 out: panic, the load goes to all of them
  EXPECT_TRUE(pool_->InPanic());
  held.clear();
  std::set<Worker*> used;
  for (int i = 0; i < 8; ++i) {
    held.push_back(pool_->Pick({}));
    ASSERT_TRUE(held.back());
    used.insert(&held.back()->worker());
  }
  EXPECT_EQ(used.size(), 4u);
  // Busy workers stay out even in panic, and unhealthy ones always do.
  w_[0]->breaker().OnLoadReport(true);
  w_[1]->healthy = false;
  held.clear();
  used.clear();
  for (int i = 0; i < 8; ++i) {
    held.push_back(pool_->Pick({}));
    used.insert(&held.back()->worker());
  }
  EXPECT_EQ(used, (std::set<Worker*>{w_[2].get(), w_[3].get()}));
}

TEST_F(PoolTest, MaxEjectionPercentKeepsWorkersInRotation) {
  PoolOptions o;
  o.max_ejection_percent = 50;
  Init(4, o);
  for (auto& w : w_) w->breaker().OnFailure();
  int ejected = 0;
  for (auto& w : w_) ejected += w->breaker().ejected();
  EXPECT_EQ(ejected, 2);
  EXPECT_FALSE(pool_->InPanic());
}

TEST_F(PoolTest, PrefixAwareRoutingSendsASharedPrefixBackToItsWorker) {
  Init(3);
  for (auto& w : w_) pool_->ApplyPoll(*w, Poll(true));
  const std::string system(640, 's');
  const RouteKey first = MakeRouteKey(system + "user one asks something long enough to matter ..");
  std::vector<std::optional<WorkerLease>> held;
  held.push_back(pool_->Pick({}, &first));
  Worker* home = &held.back()->worker();
  // Later requests with the same system prompt go to the same worker while the imbalance
  // stays within --routing-balance-abs (2)...
  for (int i = 0; i < 2; ++i) {
    const RouteKey k = MakeRouteKey(system + "another user, another question " + std::to_string(i));
    held.push_back(pool_->Pick({}, &k));
    EXPECT_EQ(&held.back()->worker(), home) << i;
  }
  // ... then the next one goes elsewhere (and that worker learns the prefix too).
  const RouteKey k = MakeRouteKey(system + "a third user");
  held.push_back(pool_->Pick({}, &k));
  Worker* other = &held.back()->worker();
  EXPECT_NE(other, home);
  EXPECT_EQ(other->prefix_index().Match(first), 10u);
  // A suspect worker forgets what it held.
  home->MarkSuspect();
  EXPECT_EQ(home->prefix_index().Match(first), 0u);
}

TEST(HostPort, Parse) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(http::ParseHostPort("0.0.0.0:8080", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(http::ParseHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  EXPECT_FALSE(http::ParseHostPort("host", &host, &port).ok());
  EXPECT_FALSE(http::ParseHostPort("host:99999", &host, &port).ok());
  EXPECT_FALSE(http::ParseHostPort("host:8x", &host, &port).ok());
}

}  // namespace
}  // namespace r1::gw
