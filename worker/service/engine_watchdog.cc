#include "worker/service/engine_watchdog.h"

namespace r1::service {

EngineWatchdog::EngineWatchdog(const engine::Engine* engine, Clock::Duration stall_timeout,
                               ChangeFn on_change, const Clock* clock, Clock::Duration poll)
    : engine_(engine),
      stall_timeout_(stall_timeout),
      on_change_(std::move(on_change)),
      clock_(clock),
      poll_(poll) {}

EngineWatchdog::~EngineWatchdog() { Stop(); }

void EngineWatchdog::Start() {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, poll_, [this] { return stop_; })) {
      lock.unlock();
      Check();
      lock.lock();
    }
  });
}

void EngineWatchdog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EngineWatchdog::Check() {
  const engine::EngineLoad load = engine_->Load();
  const Clock::TimePoint now = clock_->Now();
  // An idle engine waits for work without stepping: that is not a stall.
  const bool has_work = load.running > 0 || load.waiting > 0;
  if (load.steps != last_steps_ || !has_work) {
    last_steps_ = load.steps;
    last_progress_ = now;
  }
  const bool stalled = has_work && now - last_progress_ >= stall_timeout_;
  if (stalled == stalled_) return;
  stalled_ = stalled;
  on_change_(stalled, now - last_progress_);
}

}  // namespace r1::service
