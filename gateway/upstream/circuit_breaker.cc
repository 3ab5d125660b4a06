#include "gateway/upstream/circuit_breaker.h"

namespace r1::gw {

const char* BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kHalfOpen: return "half-open";
    case BreakerState::kOpen: return "open";
  }
  return "?";
}

CircuitBreaker::CircuitBreaker(BreakerOptions options, const Clock* clock)
    : options_(options), clock_(clock) {}

BreakerState CircuitBreaker::StateLocked() const {
  if (!open_) return BreakerState::kClosed;
  return clock_->Now() - opened_at_ >= options_.cooldown ? BreakerState::kHalfOpen
                                                          : BreakerState::kOpen;
}

BreakerState CircuitBreaker::State() const {
  std::lock_guard<std::mutex> lock(mu_);
  return StateLocked();
}

bool CircuitBreaker::CanAcquire() const {
  std::lock_guard<std::mutex> lock(mu_);
  BreakerState s = StateLocked();
  return s == BreakerState::kClosed || (s == BreakerState::kHalfOpen && !probe_in_flight_);
}

bool CircuitBreaker::TryAcquire() {
  std::lock_guard<std::mutex> lock(mu_);
  switch (StateLocked()) {
    case BreakerState::kClosed: return true;
    case BreakerState::kOpen: return false;
    case BreakerState::kHalfOpen:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::OnSuccess() {
  std::lock_guard<std::mutex> lock(mu_);
  consecutive_failures_ = 0;
  if (open_ && StateLocked() == BreakerState::kHalfOpen) {
    open_ = false;  // the probe succeeded
    probe_in_flight_ = false;
  }
}

void CircuitBreaker::OnFailure() {
  std::lock_guard<std::mutex> lock(mu_);
  if (open_) {
    if (StateLocked() == BreakerState::kHalfOpen) OpenLocked();  // the probe failed
    return;
  }
  if (++consecutive_failures_ >= options_.failure_threshold) OpenLocked();
}

void CircuitBreaker::OnAbandoned() {
  std::lock_guard<std::mutex> lock(mu_);
  probe_in_flight_ = false;
}

void CircuitBreaker::OnPressure() {
  std::lock_guard<std::mutex> lock(mu_);
  OpenLocked();
}

void CircuitBreaker::OpenLocked() {
  open_ = true;
  opened_at_ = clock_->Now();
  probe_in_flight_ = false;
  consecutive_failures_ = 0;
}

}  // namespace r1::gw
