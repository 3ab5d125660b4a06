// A retry budget as Envoy's: at most max(min_concurrency, percent% of active requests)
// retries may be outstanding at once, so retries cannot multiply an overload. A retry is
// outstanding from the decision to retry until its attempt gets a first message or ends.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace r1::gw {

class RetryBudget {
 public:
  RetryBudget(double percent, uint32_t min_concurrency)
      : percent_(percent), min_concurrency_(min_concurrency) {}
  void RequestStarted() { ++active_requests_; }
  void RequestFinished() { --active_requests_; }
  bool TryStartRetry() {
    int64_t limit = std::max<int64_t>(min_concurrency_,
                                      static_cast<int64_t>(percent_ / 100.0 * active_requests_));
    int64_t cur = active_retries_.load();
    while (cur < limit) {
      if (active_retries_.compare_exchange_weak(cur, cur + 1)) return true;
    }
    return false;
  }
  void RetryFinished() { --active_retries_; }
  int64_t active_retries() const { return active_retries_; }

 private:
  const double percent_;
  const uint32_t min_concurrency_;
  std::atomic<int64_t> active_requests_{0};
  std::atomic<int64_t> active_retries_{0};
};

}  // namespace r1::gw
