#include "gateway/upstream/circuit_breaker.h"

#include <algorithm>
#include <cmath>

namespace r1::gw {

const char* BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kHalfOpen: return "half-open";
    case BreakerState::kOpen: return "open";
  }
  return "?";
}

int EjectionGate::limit() const {
  return std::max(1, static_cast<int>(std::floor(max_percent_ / 100.0 * workers_.load())));
}

bool EjectionGate::TryEject() {
  const int limit_now = limit();
  int cur = ejected_.load();
  while (cur < limit_now) {
    if (ejected_.compare_exchange_weak(cur, cur + 1)) return true;
  }
  return false;
}

CircuitBreaker::CircuitBreaker(BreakerOptions options, const Clock* clock, EjectionGate* gate)
    : options_(options), clock_(clock), gate_(gate) {}

CircuitBreaker::~CircuitBreaker() {
  if (ejected_ && gate_) gate_->Unejected();
}

bool CircuitBreaker::EjectedLocked() const {
  return ejected_ && clock_->Now() - ejected_at_ < cooldown_;
}

BreakerState CircuitBreaker::StateLocked() const {
  if (busy_) return BreakerState::kOpen;
  if (!ejected_) return BreakerState::kClosed;
  return EjectedLocked() ? BreakerState::kOpen : BreakerState::kHalfOpen;
}

BreakerState CircuitBreaker::State() const {
  std::lock_guard<std::mutex> lock(mu_);
  return StateLocked();
}

bool CircuitBreaker::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_;
}

bool CircuitBreaker::ejected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ejected_;
}

uint64_t CircuitBreaker::ejections_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ejections_total_;
}

int CircuitBreaker::ejections_in_a_row() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_a_row_;
}

Clock::Duration CircuitBreaker::current_cooldown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cooldown_;
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
  // Success during the cool-down (a request that started before the ejection, or one sent in
  // panic mode) proves little; after it, it is the probe's answer.
  if (ejected_ && !EjectedLocked()) CloseLocked();
}

void CircuitBreaker::OnFailure() {
  std::lock_guard<std::mutex> lock(mu_);
  if (ejected_) {
    if (!EjectedLocked()) EjectLocked();  // the probe failed: eject again, for longer
    return;
  }
  if (++consecutive_failures_ < options_.failure_threshold) return;
  // Over the cap the worker stays in rotation; the next failure asks again.
  if (gate_ && !gate_->TryEject()) return;
  EjectLocked();
}

void CircuitBreaker::OnAbandoned() {
  std::lock_guard<std::mutex> lock(mu_);
  probe_in_flight_ = false;
}

void CircuitBreaker::OnLoadReport(bool pressure) {
  std::lock_guard<std::mutex> lock(mu_);
  busy_ = pressure;
}

void CircuitBreaker::EjectLocked() {
  const Clock::TimePoint now = clock_->Now();
  // A worker that stayed closed for the longest cool-down starts the doubling afresh.
  if (!ejected_ && in_a_row_ > 0 && now - closed_at_ >= options_.max_cooldown) in_a_row_ = 0;
  ++in_a_row_;
  ++ejections_total_;
  Clock::Duration d = options_.cooldown;
  for (int i = 1; i < in_a_row_ && d < options_.max_cooldown; ++i) d *= 2;
  cooldown_ = std::min(d, std::max(options_.max_cooldown, options_.cooldown));
  ejected_ = true;
  ejected_at_ = now;
  probe_in_flight_ = false;
  consecutive_failures_ = 0;
}

void CircuitBreaker::CloseLocked() {
  ejected_ = false;
  probe_in_flight_ = false;
  closed_at_ = clock_->Now();
  if (gate_) gate_->Unejected();
}

}  // namespace r1::gw
