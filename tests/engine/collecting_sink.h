// A RequestSink for engine tests: collects the ids, the last delta, and lets the test cancel
// and wait for the end.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "worker/engine/engine.h"

namespace r1::engine {

class CollectingSink : public RequestSink {
 public:
  void OnDelta(Delta d) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const TokenInfo& t : d.tokens) {
      ids.push_back(t.id);
      logprobs.push_back(t.logprob);
    }
    if (!d.prompt_logprobs.empty()) {
      prompt_logprobs = d.prompt_logprobs;
      prompt_logprobs_delta = deltas;
    }
    deltas++;
    if (d.finish != FinishReason::kNone) {
      last = d;
      done = true;
      cv_.notify_all();
    }
  }
  bool Cancelled() const override { return cancel.load(); }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done; });
  }
  int Count() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(ids.size());
  }

  std::atomic<bool> cancel{false};
  std::vector<int32_t> ids;
  std::vector<float> logprobs;  // one per id (0 unless the request asked for logprobs)
  int deltas = 0;
  std::vector<TokenInfo> prompt_logprobs;  // as the delta that carried them had them
  int prompt_logprobs_delta = -1;          // which delta (0: the first)
  Delta last;
  bool done = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

// Load() is published after each step, a moment after the last delta: polls (up to 2 s) until
// no sequence runs and no block is used.
inline EngineLoad IdleLoad(Engine* e) {
  EngineLoad l = e->Load();
  for (int i = 0; i < 2000 && (l.blocks_used != 0 || l.running != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    l = e->Load();
  }
  return l;
}

}  // namespace r1::engine
