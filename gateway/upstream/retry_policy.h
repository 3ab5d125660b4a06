// When a failed attempt is tried again (Envoy's router retry state): which failures are
// retryable, which count against the worker, how long to wait (full-jitter backoff), how many
// attempts a choice may make, and the retry budget shared by all requests. Status codes are
// grpc::StatusCode throughout.
//
// The exchange retries only while nothing of a choice has reached the client; the policy
// decides among those cases.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

#include <grpcpp/support/status.h>

#include "common/clock.h"
#include "common/random.h"
#include "gateway/upstream/backoff.h"
#include "gateway/upstream/retry_budget.h"

namespace r1::gw {

// Failures worth another attempt on another worker: UNAVAILABLE (connection failure, worker
// dying or draining), RESOURCE_EXHAUSTED (queue full), and DEADLINE_EXCEEDED when the attempt
// had no token yet (a hung worker: the first-token timeout, or the attempt's own deadline).
// A deadline after tokens came means a long generation: another try would take as long.
bool IsRetryable(grpc::StatusCode code, bool got_first_token);

// Failures that say something about the worker; they count against its circuit breaker.
bool IsWorkerFault(grpc::StatusCode code);

struct RetryOptions {
  int max_attempts = 3;  // first attempt included
  uint64_t base_ms = 25;
  uint64_t cap_ms = 250;
  double budget_percent = 20;
  uint32_t budget_min = 10;
};

// One choice's retries: attempts made, its backoff sequence, the budget it holds.
class RetryState {
 public:
  int attempts() const { return attempts_; }
  void AttemptStarted() { ++attempts_; }
  // The current attempt got its first message: a retry stops holding budget.
  void Answered() { token_.reset(); }
  // The choice is over.
  void Finished() { token_.reset(); }
  bool holds_budget() const { return token_.has_value(); }

 private:
  friend class RetryPolicy;
  explicit RetryState(JitteredBackoff backoff) : backoff_(backoff) {}
  JitteredBackoff backoff_;
  int attempts_ = 0;
  std::optional<RetryBudget::Token> token_;
};

enum class RetryVerdict {
  kRetry,             // wait `delay`, then try again
  kNotRetryable,      // the failure is final
  kOutOfAttempts,     // --max-attempts reached
  kBudgetExhausted,   // the retry budget is spent
};

struct RetryDecision {
  RetryVerdict verdict;
  Clock::Duration delay{};
};

// Shared by all requests; thread-safe.
class RetryPolicy {
 public:
  // `requests_in_flight` is the gateway's count of requests in flight (see RetryBudget).
  RetryPolicy(RetryOptions options, const std::atomic<int64_t>* requests_in_flight,
              Random* random);

  RetryState NewState() const;
  // After a failed attempt of a choice that sent the client nothing yet.
  RetryDecision OnFailure(RetryState& state, grpc::StatusCode code, bool got_first_token);
  const RetryOptions& options() const { return options_; }
  const RetryBudget& budget() const { return budget_; }

 private:
  const RetryOptions options_;
  RetryBudget budget_;
  Random* random_;
};

}  // namespace r1::gw
