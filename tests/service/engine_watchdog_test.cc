// The engine watchdog on a fake clock over a scripted engine: no step for the stall timeout
// while there is work means stalled (once); steps again, or no work, means fine.
#include "worker/service/engine_watchdog.h"

#include <gtest/gtest.h>

namespace r1::service {
namespace {

using namespace std::chrono_literals;

// Only Load() matters to the watchdog.
class ScriptedEngine final : public engine::Engine {
 public:
  absl::Status SubmitAll(std::vector<engine::EngineRequest>) override { return absl::OkStatus(); }
  engine::EngineLoad Load() const override { return load; }
  void StopAccepting() override {}
  void Shutdown() override {}
  int32_t max_model_len() const override { return 0; }
  int32_t vocab_size() const override { return 0; }
  std::string device_name() const override { return "cpu"; }
  int32_t max_running() const override { return 0; }
  int32_t max_waiting() const override { return 0; }
  engine::EngineLoad load;
};

class WatchdogTest : public ::testing::Test {
 protected:
  WatchdogTest()
      : dog_(&engine_, 5s, [this](bool stalled, Clock::Duration d) { changes_.emplace_back(stalled, d); },
             &clock_) {}
  void At(Clock::Duration d) {
    clock_.Advance(d);
    dog_.Check();
  }
  FakeClock clock_;
  ScriptedEngine engine_;
  std::vector<std::pair<bool, Clock::Duration>> changes_;
  EngineWatchdog dog_;
};

TEST_F(WatchdogTest, NoStepWithWorkForTheTimeoutIsAStall) {
  engine_.load.running = 2;
  engine_.load.steps = 10;
  At(0s);
  At(4s);
  EXPECT_TRUE(changes_.empty());
  At(1s);  // 5 s without a step, with two sequences running
  ASSERT_EQ(changes_.size(), 1u);
  EXPECT_TRUE(changes_[0].first);
  EXPECT_EQ(changes_[0].second, 5s);
  EXPECT_TRUE(dog_.stalled());
  At(10s);
  EXPECT_EQ(changes_.size(), 1u);  // said once
  engine_.load.steps = 11;  // it moves again
  At(100ms);
  ASSERT_EQ(changes_.size(), 2u);
  EXPECT_FALSE(changes_[1].first);
  EXPECT_FALSE(dog_.stalled());
}

TEST_F(WatchdogTest, SlowStepsAndIdleEnginesAreNotStalls) {
  engine_.load.waiting = 1;
  for (int i = 0; i < 20; ++i) {
    ++engine_.load.steps;  // a step every 4 s: slow, not stuck
    At(4s);
  }
  engine_.load.waiting = 0;  // idle: the engine waits for work without stepping
  At(1h);
  EXPECT_TRUE(changes_.empty());
  engine_.load.waiting = 1;  // work arrives: the clock starts now
  At(4s);
  EXPECT_TRUE(changes_.empty());
  At(1s);
  EXPECT_EQ(changes_.size(), 1u);
}

}  // namespace
}  // namespace r1::service
