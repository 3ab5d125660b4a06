#include <gtest/gtest.h>

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
  EXPECT_EQ(pool.Snapshot().size(), 1u);
  pool.Stop();
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
