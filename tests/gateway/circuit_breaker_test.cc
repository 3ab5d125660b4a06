// The breaker on a fake clock: consecutive failures eject, the cool-down doubles with each
// ejection in a row and starts afresh after a quiet spell, a half-open breaker lets one probe
// through, memory pressure (busy) lasts exactly as long as the load reports show it, and the
// ejection gate caps how many workers are out at once.
#include <gtest/gtest.h>

#include "gateway/upstream/circuit_breaker.h"

namespace r1::gw {
namespace {
using std::chrono::milliseconds;
using std::chrono::seconds;

class BreakerTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  CircuitBreaker breaker_{{3, milliseconds(1000), milliseconds(5000)}, &clock_};

  void Eject() {
    for (int i = 0; i < 3; ++i) breaker_.OnFailure();
    ASSERT_EQ(breaker_.State(), BreakerState::kOpen);
  }
};

TEST_F(BreakerTest, OpensAfterConsecutiveFailures) {
  EXPECT_EQ(breaker_.State(), BreakerState::kClosed);
  breaker_.OnFailure();
  breaker_.OnFailure();
  breaker_.OnSuccess();  // resets the count
  breaker_.OnFailure();
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.State(), BreakerState::kClosed);
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
  EXPECT_TRUE(breaker_.ejected());
  EXPECT_FALSE(breaker_.busy());
  EXPECT_FALSE(breaker_.TryAcquire());
  EXPECT_FALSE(breaker_.CanAcquire());
  EXPECT_EQ(breaker_.ejections_total(), 1u);
}

TEST_F(BreakerTest, HalfOpenLetsOneProbeThrough) {
  Eject();
  clock_.Advance(milliseconds(999));
  EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
  breaker_.OnSuccess();  // a request from before the ejection: proves nothing yet
  EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(breaker_.State(), BreakerState::kHalfOpen);
  EXPECT_TRUE(breaker_.CanAcquire());
  EXPECT_TRUE(breaker_.TryAcquire());
  EXPECT_FALSE(breaker_.TryAcquire());  // only one probe
  EXPECT_FALSE(breaker_.CanAcquire());
  breaker_.OnSuccess();
  EXPECT_EQ(breaker_.State(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.TryAcquire());
  EXPECT_TRUE(breaker_.TryAcquire());
}

TEST_F(BreakerTest, EachEjectionInARowDoublesTheCooldownUpToTheCap) {
  Eject();
  // 1 s, then each failed probe ejects it for twice as long: 2 s, 4 s, then the 5 s cap.
  for (int64_t want_ms : {1000, 2000, 4000, 5000, 5000}) {
    EXPECT_EQ(breaker_.current_cooldown(), milliseconds(want_ms));
    clock_.Advance(milliseconds(want_ms - 1));
    EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
    clock_.Advance(milliseconds(1));
    ASSERT_TRUE(breaker_.TryAcquire());  // the probe
    breaker_.OnFailure();                // fails
  }
  EXPECT_EQ(breaker_.ejections_in_a_row(), 6);
  EXPECT_EQ(breaker_.ejections_total(), 6u);
}

TEST_F(BreakerTest, ASuccessfulProbeKeepsTheCountUntilAQuietSpell) {
  Eject();
  clock_.Advance(milliseconds(1000));
  ASSERT_TRUE(breaker_.TryAcquire());
  breaker_.OnSuccess();  // closed again
  // Failing again soon: the next ejection is the second in a row (2 s).
  clock_.Advance(milliseconds(4999));
  Eject();
  EXPECT_EQ(breaker_.current_cooldown(), milliseconds(2000));
  clock_.Advance(milliseconds(2000));
  ASSERT_TRUE(breaker_.TryAcquire());
  breaker_.OnSuccess();
  // Closed for the longest cool-down (5 s): the next ejection starts again from 1 s.
  clock_.Advance(milliseconds(5000));
  Eject();
  EXPECT_EQ(breaker_.current_cooldown(), milliseconds(1000));
  EXPECT_EQ(breaker_.ejections_in_a_row(), 1);
}

TEST_F(BreakerTest, AbandonedProbeFreesTheSlot) {
  Eject();
  clock_.Advance(milliseconds(1000));
  ASSERT_TRUE(breaker_.TryAcquire());
  breaker_.OnAbandoned();
  EXPECT_TRUE(breaker_.TryAcquire());
}

TEST_F(BreakerTest, BusyLastsAsLongAsTheReportsShowPressure) {
  breaker_.OnLoadReport(true);
  EXPECT_TRUE(breaker_.busy());
  EXPECT_FALSE(breaker_.ejected());
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(seconds(600));  // however long: no probe, no back-off
    breaker_.OnLoadReport(true);
    EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
    EXPECT_FALSE(breaker_.CanAcquire());
  }
  breaker_.OnLoadReport(false);  // the work that held the memory is done
  EXPECT_EQ(breaker_.State(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.TryAcquire());
  EXPECT_EQ(breaker_.ejections_total(), 0u);  // busy is not broken
}

TEST(EjectionGate, CapsTheEjectedShareButAlwaysAllowsOne) {
  FakeClock clock;
  EjectionGate gate(40);
  gate.SetWorkers(5);  // 40% of 5: 2
  EXPECT_EQ(gate.limit(), 2);
  std::vector<std::unique_ptr<CircuitBreaker>> b;
  for (int i = 0; i < 5; ++i)
    b.push_back(std::make_unique<CircuitBreaker>(BreakerOptions{1, seconds(1), seconds(8)},
                                                 &clock, &gate));
  for (auto& x : b) x->OnFailure();
  EXPECT_EQ(gate.ejected(), 2);
  EXPECT_TRUE(b[0]->ejected());
  EXPECT_TRUE(b[1]->ejected());
  EXPECT_FALSE(b[2]->ejected());  // over the cap: stays in rotation
  EXPECT_TRUE(b[2]->CanAcquire());
  // One comes back: the next failure elsewhere may eject.
  clock.Advance(seconds(1));
  ASSERT_TRUE(b[0]->TryAcquire());
  b[0]->OnSuccess();
  EXPECT_EQ(gate.ejected(), 1);
  b[2]->OnFailure();
  EXPECT_TRUE(b[2]->ejected());
  EXPECT_EQ(gate.ejected(), 2);
  // A failed probe keeps its place (no second one taken).
  clock.Advance(seconds(1));
  ASSERT_TRUE(b[1]->TryAcquire());
  b[1]->OnFailure();
  EXPECT_EQ(gate.ejected(), 2);
  // A breaker destroyed while ejected gives its place back.
  b[1].reset();
  EXPECT_EQ(gate.ejected(), 1);

  EjectionGate small(10);
  small.SetWorkers(3);
  EXPECT_EQ(small.limit(), 1);  // at least one, as Envoy
}

TEST(BreakerName, Names) {
  EXPECT_STREQ(BreakerStateName(BreakerState::kHalfOpen), "half-open");
  EXPECT_EQ(static_cast<int>(BreakerState::kOpen), 2);
}

}  // namespace
}  // namespace r1::gw
