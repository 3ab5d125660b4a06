// Per-worker circuit breaker. Closed: traffic flows. Open: no traffic; entered after
// `failure_threshold` consecutive failures or whenever the worker reports memory pressure.
// After `cooldown` without new pressure reports it is half-open: one probe request may go;
// its success closes the breaker, its failure opens it again. Thread-safe.
#pragma once

#include <mutex>

#include "common/clock.h"

namespace r1::gw {

enum class BreakerState { kClosed = 0, kHalfOpen = 1, kOpen = 2 };
const char* BreakerStateName(BreakerState s);

struct BreakerOptions {
  int failure_threshold = 5;
  Clock::Duration cooldown = std::chrono::seconds(5);
};

class CircuitBreaker {
 public:
  CircuitBreaker(BreakerOptions options, const Clock* clock);

  BreakerState State() const;
  // True when a request could go now (closed, or half-open with the probe not yet taken).
  bool CanAcquire() const;
  // Takes permission for one request: always when closed, once when half-open.
  bool TryAcquire();
  // The outcome of a request that had permission.
  void OnSuccess();
  void OnFailure();
  // A request that had permission ended without telling anything (cancelled by its client).
  void OnAbandoned();
  // A load report: pressure opens the breaker (and restarts the cool-down).
  void OnPressure();

 private:
  BreakerState StateLocked() const;
  void OpenLocked();

  const BreakerOptions options_;
  const Clock* clock_;
  mutable std::mutex mu_;
  bool open_ = false;  // open or half-open, depending on the time
  Clock::TimePoint opened_at_{};
  bool probe_in_flight_ = false;
  int consecutive_failures_ = 0;
};

}  // namespace r1::gw
