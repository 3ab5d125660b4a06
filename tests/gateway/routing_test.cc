// Routing decisions without workers: the three policies' choices on hand-made candidates, and
// the prefix index (chained chunk hashes, longest leading match, LRU eviction tail first).
#include <gtest/gtest.h>

#include <string>

#include "gateway/upstream/prefix_index.h"
#include "gateway/upstream/routing.h"

namespace r1::gw {
namespace {

RouteCandidate C(int64_t streams, uint32_t running = 0, uint32_t waiting = 0,
                 double kv_usage = 0, size_t prefix_chunks = 0) {
  RouteCandidate c;
  c.streams = streams;
  c.running = running;
  c.waiting = waiting;
  c.kv_usage = kv_usage;
  c.prefix_chunks = prefix_chunks;
  c.streams_at_report = streams;  // a report taken now, unless a test says otherwise
  return c;
}

RoutingOptions Policy(RoutingPolicy p) {
  RoutingOptions o;
  o.policy = p;
  return o;
}

TEST(Routing, ParsesAndNamesPolicies) {
  RoutingPolicy p;
  for (const char* name : {"least-connections", "load", "prefix-aware"}) {
    ASSERT_TRUE(ParseRoutingPolicy(name, &p));
    EXPECT_STREQ(RoutingPolicyName(p), name);
  }
  EXPECT_FALSE(ParseRoutingPolicy("round-robin", &p));
  EXPECT_EQ(RoutingOptions().policy, RoutingPolicy::kPrefixAware);  // the default
}

TEST(Routing, LeastConnectionsSeesOnlyThisGatewaysStreams) {
  FakeRandom random{0};
  // The second worker reports a long queue (other gateways' work): least connections ignores it.
  const std::vector<RouteCandidate> c = {C(3), C(1, 10, 20), C(2)};
  EXPECT_EQ(ChooseWorker(Policy(RoutingPolicy::kLeastConnections), c, &random), 1);
  EXPECT_EQ(ChooseWorker(Policy(RoutingPolicy::kLeastConnections), {}, &random), -1);
}

TEST(Routing, LoadTakesTheLargerOfStreamsAndTheReportPlusKvUse) {
  FakeRandom random{0};
  EXPECT_DOUBLE_EQ(LoadOf(C(3, 1, 1, 0.5)), 3.5);
  EXPECT_DOUBLE_EQ(LoadOf(C(1, 4, 2, 0.25)), 6.25);
  EXPECT_DOUBLE_EQ(LoadOf(C(0, 0, 0, 7)), 1);  // KV use clamped to [0, 1]
  const std::vector<RouteCandidate> c = {C(3), C(1, 10, 20), C(2, 1, 0, 0.9)};
  EXPECT_EQ(ChooseWorker(Policy(RoutingPolicy::kLoad), c, &random), 2);
}

TEST(Routing, AReportIsBroughtUpToDateByThisGatewaysStreamsSinceIt) {
  FakeRandom random{0};
  // Reported 4 running when this gateway had 4 streams there; 3 have ended since: load 1, not 4.
  RouteCandidate drained = C(1, 4, 0);
  drained.streams_at_report = 4;
  EXPECT_DOUBLE_EQ(LoadOf(drained), 1);
  // Reported 6 (2 of them ours); one more of ours since: the other gateways' 4 plus our 3.
  RouteCandidate shared = C(3, 5, 1);
  shared.streams_at_report = 2;
  EXPECT_DOUBLE_EQ(LoadOf(shared), 7);
  // Never below what this gateway has open, never negative.
  RouteCandidate old = C(2, 0, 0);
  old.streams_at_report = 5;
  EXPECT_DOUBLE_EQ(LoadOf(old), 2);
  // The drained worker (load 1) beats one with 2 streams and an up-to-date report of 2.
  RouteCandidate busy = C(2, 2, 0);
  busy.streams_at_report = 2;
  EXPECT_EQ(ChooseWorker(Policy(RoutingPolicy::kLoad), {busy, drained}, &random), 1);
  // Equal streams and reports: the emptier KV cache wins.
  EXPECT_EQ(ChooseWorker(Policy(RoutingPolicy::kLoad), {C(1, 1, 0, 0.8), C(1, 1, 0, 0.2)}, &random),
            1);
}

TEST(Routing, PrefixAwarePrefersTheCachedPrefixWithinTheAllowedImbalance) {
  FakeRandom random{0};
  const RoutingOptions o = Policy(RoutingPolicy::kPrefixAware);  // slack max(2, 0.5 * min)
  // Worker 2 holds 8 of the prompt's chunks and is 2 above the least loaded: chosen.
  EXPECT_EQ(ChooseWorker(o, {C(1), C(2, 0, 0, 0, 3), C(3, 0, 0, 0, 8)}, &random), 2);
  // 3 above the least loaded is too much imbalance: the next best cached prefix.
  EXPECT_EQ(ChooseWorker(o, {C(1), C(2, 0, 0, 0, 3), C(4, 0, 0, 0, 8)}, &random), 1);
  // The slack grows with the load: at least loaded 10, 5 more is allowed.
  EXPECT_EQ(ChooseWorker(o, {C(10), C(15, 0, 0, 0, 8)}, &random), 1);
  EXPECT_EQ(ChooseWorker(o, {C(10), C(16, 0, 0, 0, 8)}, &random), 0);
  // No worker has any of it: the least loaded (as the load policy).
  EXPECT_EQ(ChooseWorker(o, {C(2), C(1, 0, 0, 0.5), C(1, 0, 0, 0.1)}, &random), 2);
  // Equal prefixes: the less loaded one.
  EXPECT_EQ(ChooseWorker(o, {C(2, 0, 0, 0, 4), C(1, 0, 0, 0, 4)}, &random), 1);
  // Reported load counts too: a worker busy with other gateways' requests is out of range.
  EXPECT_EQ(ChooseWorker(o, {C(0), C(0, 3, 2, 0, 8)}, &random), 0);
}

TEST(Routing, TiesGoUniformlyAtRandom) {
  SystemRandom random(7);
  std::vector<int> count(3);
  for (int i = 0; i < 3000; ++i)
    ++count[ChooseWorker(Policy(RoutingPolicy::kPrefixAware), {C(1), C(1), C(1)}, &random)];
  for (int n : count) EXPECT_NEAR(n, 1000, 150);
}

std::string Text(char c, size_t n) { return std::string(n, c); }

TEST(PrefixIndex, ChunksAreChainedOverThePrefix) {
  const RouteKey a = MakeRouteKey(Text('a', 64) + Text('b', 64) + Text('c', 10));
  EXPECT_EQ(a.chunks.size(), 2u);  // whole chunks only
  EXPECT_EQ(a.bytes, 138u);
  // The same second chunk after a different first one has another hash.
  const RouteKey b = MakeRouteKey(Text('x', 64) + Text('b', 64));
  EXPECT_NE(a.chunks[1], b.chunks[1]);
  EXPECT_EQ(MakeRouteKey(Text('a', 64) + Text('b', 64)).chunks, a.chunks);
  EXPECT_TRUE(MakeRouteKey("short").chunks.empty());
}

TEST(PrefixIndex, MatchesTheLongestLeadingRun) {
  PrefixIndex index;
  index.SetCapacity(100);
  const std::string system = Text('s', 64 * 3);
  index.Insert(MakeRouteKey(system + Text('u', 64)));
  EXPECT_EQ(index.Match(MakeRouteKey(system + Text('v', 128))), 3u);  // the shared system prompt
  EXPECT_EQ(index.Match(MakeRouteKey(system + Text('u', 64) + Text('w', 64))), 4u);
  EXPECT_EQ(index.Match(MakeRouteKey(Text('t', 64) + system)), 0u);
  index.Clear();
  EXPECT_EQ(index.Match(MakeRouteKey(system)), 0u);
}

TEST(PrefixIndex, EvictsLeastRecentlyUsedTailsFirst) {
  PrefixIndex index;
  index.SetCapacity(6);
  const RouteKey a = MakeRouteKey(Text('a', 64 * 4));
  const RouteKey b = MakeRouteKey(Text('b', 64 * 4));
  index.Insert(a);
  index.Insert(b);  // 8 chunks into 6: a's last two go, its first two still match
  EXPECT_EQ(index.size(), 6u);
  EXPECT_EQ(index.Match(a), 2u);
  EXPECT_EQ(index.Match(b), 4u);
  index.Insert(a);  // a used again: b's tail goes
  EXPECT_EQ(index.Match(a), 4u);
  EXPECT_EQ(index.Match(b), 2u);
  index.SetCapacity(2);  // the worker's cache shrank
  EXPECT_EQ(index.Match(a), 2u);
  EXPECT_EQ(index.Match(b), 0u);
}

}  // namespace
}  // namespace r1::gw
