#include <gtest/gtest.h>

#include "gateway/upstream/circuit_breaker.h"

namespace r1::gw {
namespace {
using std::chrono::milliseconds;

class BreakerTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  CircuitBreaker breaker_{{3, milliseconds(1000)}, &clock_};
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
  EXPECT_FALSE(breaker_.TryAcquire());
  EXPECT_FALSE(breaker_.CanAcquire());
}

TEST_F(BreakerTest, HalfOpenLetsOneProbeThrough) {
  breaker_.OnPressure();
  clock_.Advance(milliseconds(999));
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

TEST_F(BreakerTest, FailedProbeReopensForAnotherCooldown) {
  breaker_.OnPressure();
  clock_.Advance(milliseconds(1000));
  ASSERT_TRUE(breaker_.TryAcquire());
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
  clock_.Advance(milliseconds(500));
  EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
  clock_.Advance(milliseconds(500));
  EXPECT_EQ(breaker_.State(), BreakerState::kHalfOpen);
}

TEST_F(BreakerTest, AbandonedProbeFreesTheSlot) {
  breaker_.OnPressure();
  clock_.Advance(milliseconds(1000));
  ASSERT_TRUE(breaker_.TryAcquire());
  breaker_.OnAbandoned();
  EXPECT_TRUE(breaker_.TryAcquire());
}

TEST_F(BreakerTest, PressureKeepsItOpen) {
  breaker_.OnPressure();
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(milliseconds(600));
    breaker_.OnPressure();  // every load report still shows pressure
    EXPECT_EQ(breaker_.State(), BreakerState::kOpen);
  }
  clock_.Advance(milliseconds(1000));  // pressure gone for a cool-down
  EXPECT_EQ(breaker_.State(), BreakerState::kHalfOpen);
}

TEST(BreakerName, Names) {
  EXPECT_STREQ(BreakerStateName(BreakerState::kHalfOpen), "half-open");
  EXPECT_EQ(static_cast<int>(BreakerState::kOpen), 2);
}

}  // namespace
}  // namespace r1::gw
