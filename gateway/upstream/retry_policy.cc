#include "gateway/upstream/retry_policy.h"

namespace r1::gw {

bool IsRetryable(grpc::StatusCode code, bool got_first_token) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return true;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return !got_first_token;
    default: return false;
  }
}

bool IsWorkerFault(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::DATA_LOSS: return true;
    default: return false;
  }
}

RetryPolicy::RetryPolicy(RetryOptions options, const std::atomic<int64_t>* requests_in_flight,
                         Random* random)
    : options_(options),
      budget_(options.budget_percent, options.budget_min, requests_in_flight),
      random_(random) {}

RetryState RetryPolicy::NewState() const {
  return RetryState(JitteredBackoff(options_.base_ms, options_.cap_ms, random_));
}

RetryDecision RetryPolicy::OnFailure(RetryState& state, grpc::StatusCode code,
                                     bool got_first_token) {
  if (!IsRetryable(code, got_first_token)) return {RetryVerdict::kNotRetryable};
  if (state.attempts_ >= options_.max_attempts) return {RetryVerdict::kOutOfAttempts};
  // A choice holds one unit of budget across its consecutive retries.
  if (!state.token_) {
    state.token_ = budget_.TryStartRetry();
    if (!state.token_) return {RetryVerdict::kBudgetExhausted};
  }
  return {RetryVerdict::kRetry, std::chrono::milliseconds(state.backoff_.NextMs())};
}

}  // namespace r1::gw
