// Tells a hung engine from a busy one. The gRPC server and its health service run on their own
// threads and answer SERVING whatever the engine thread does, so a model call that never returns
// (or a deadlock) would leave requests waiting with health SERVING throughout. The engine bumps
// a step counter every step (EngineLoad::steps); this watchdog reads it every `poll`, and when
// the engine has work (running or queued sequences) but the counter has not moved for
// `stall_timeout`, it calls on_change(true) (the worker then says NOT_SERVING and the gateway
// moves its streams); once steps resume, on_change(false). Torch-free and gRPC-free.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "worker/engine/engine.h"

namespace r1::service {

class EngineWatchdog {
 public:
  // `stalled_for`: how long the engine has gone without a step (when stalled).
  using ChangeFn = std::function<void(bool stalled, Clock::Duration stalled_for)>;

  EngineWatchdog(const engine::Engine* engine, Clock::Duration stall_timeout, ChangeFn on_change,
                 const Clock* clock = SystemClock::Get(),
                 Clock::Duration poll = std::chrono::milliseconds(100));
  ~EngineWatchdog();

  void Start();
  void Stop();
  // One look at the engine (the thread's loop; tests call it on a fake clock).
  void Check();
  bool stalled() const { return stalled_; }

 private:
  const engine::Engine* engine_;
  const Clock::Duration stall_timeout_;
  ChangeFn on_change_;
  const Clock* clock_;
  const Clock::Duration poll_;
  int64_t last_steps_ = -1;
  Clock::TimePoint last_progress_{};
  bool stalled_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace r1::service
