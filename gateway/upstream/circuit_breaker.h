// Per-worker circuit breaker. It tells a busy worker from a broken one:
//  - busy: the worker's latest load report shows memory pressure (memory held by live work
//    near its total). No new traffic until a report shows none: the worker itself says when the
//    work is done, so there is nothing to probe and no back-off.
//  - broken: `failure_threshold` consecutive failures eject it for a cool-down that doubles with
//    each ejection in a row (cooldown * 2^(n-1), at most max_cooldown; n falls back to 0 once
//    the breaker has stayed closed for max_cooldown), as Envoy's outlier detection backs off.
//    After the cool-down it is half-open: one probe request may go; its success closes the
//    breaker, its failure ejects it again for the next, longer cool-down. An EjectionGate shared
//    by the pool caps how many workers are ejected at once (Envoy's max_ejection_percent).
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "common/clock.h"

namespace r1::gw {

enum class BreakerState { kClosed = 0, kHalfOpen = 1, kOpen = 2 };
const char* BreakerStateName(BreakerState s);

struct BreakerOptions {
  int failure_threshold = 5;
  Clock::Duration cooldown = std::chrono::seconds(5);       // the first ejection's
  Clock::Duration max_cooldown = std::chrono::seconds(60);  // the cap of the doubling
};

// How many workers may be ejected for failures at once: max(1, floor(percent% of workers)).
class EjectionGate {
 public:
  explicit EjectionGate(double max_percent) : max_percent_(max_percent) {}
  void SetWorkers(int n) { workers_ = n; }
  // Takes a place for one more ejected worker; false when the cap is reached.
  bool TryEject();
  // An ejected worker's breaker closed.
  void Unejected() { --ejected_; }
  int ejected() const { return ejected_; }
  int limit() const;

 private:
  const double max_percent_;
  std::atomic<int> workers_{0};
  std::atomic<int> ejected_{0};
};

class CircuitBreaker {
 public:
  // `gate` may be null (no cap); it must outlive the breaker.
  CircuitBreaker(BreakerOptions options, const Clock* clock, EjectionGate* gate = nullptr);
  ~CircuitBreaker();

  BreakerState State() const;
  bool busy() const;
  bool ejected() const;
  // Ejections so far (a counter) and in a row (the back-off's exponent).
  uint64_t ejections_total() const;
  int ejections_in_a_row() const;
  // The current (or last) ejection's cool-down.
  Clock::Duration current_cooldown() const;

  // True when a request could go now (closed, or half-open with the probe not yet taken).
  bool CanAcquire() const;
  // Takes permission for one request: always when closed, once when half-open.
  bool TryAcquire();
  // The outcome of a request that had permission.
  void OnSuccess();
  void OnFailure();
  // A request that had permission ended without telling anything (cancelled by its client).
  void OnAbandoned();
  // A load report: `pressure` makes the worker busy, its absence ends that.
  void OnLoadReport(bool pressure);

 private:
  BreakerState StateLocked() const;
  bool EjectedLocked() const;
  void EjectLocked();
  void CloseLocked();

  const BreakerOptions options_;
  const Clock* clock_;
  EjectionGate* gate_;
  mutable std::mutex mu_;
  bool busy_ = false;
  bool ejected_ = false;  // ejected or half-open, depending on the time
  Clock::TimePoint ejected_at_{};
  Clock::Duration cooldown_{};
  Clock::TimePoint closed_at_{};
  int in_a_row_ = 0;
  uint64_t ejections_total_ = 0;
  bool probe_in_flight_ = false;
  int consecutive_failures_ = 0;
};

}  // namespace r1::gw
