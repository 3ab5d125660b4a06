#include <gtest/gtest.h>

#include "gateway/upstream/retry_policy.h"

namespace r1::gw {
namespace {

using grpc::StatusCode;

TEST(RetryPolicy, Classification) {
  // Retryable before anything reached the client: the worker could not take the request.
  EXPECT_TRUE(IsRetryable(StatusCode::UNAVAILABLE, false));
  EXPECT_TRUE(IsRetryable(StatusCode::UNAVAILABLE, true));
  EXPECT_TRUE(IsRetryable(StatusCode::RESOURCE_EXHAUSTED, false));
  // A deadline is a hung worker before the first token, a long generation after it.
  EXPECT_TRUE(IsRetryable(StatusCode::DEADLINE_EXCEEDED, false));
  EXPECT_FALSE(IsRetryable(StatusCode::DEADLINE_EXCEEDED, true));
  for (StatusCode c : {StatusCode::OK, StatusCode::CANCELLED, StatusCode::INVALID_ARGUMENT,
                       StatusCode::INTERNAL, StatusCode::UNKNOWN, StatusCode::UNIMPLEMENTED})
    EXPECT_FALSE(IsRetryable(c, false)) << c;

  for (StatusCode c : {StatusCode::UNAVAILABLE, StatusCode::RESOURCE_EXHAUSTED,
                       StatusCode::INTERNAL, StatusCode::UNKNOWN, StatusCode::DEADLINE_EXCEEDED,
                       StatusCode::DATA_LOSS})
    EXPECT_TRUE(IsWorkerFault(c)) << c;
  // The client's doing, or a proper answer about the request: not the worker's fault.
  for (StatusCode c : {StatusCode::OK, StatusCode::CANCELLED, StatusCode::INVALID_ARGUMENT,
                       StatusCode::OUT_OF_RANGE, StatusCode::UNIMPLEMENTED})
    EXPECT_FALSE(IsWorkerFault(c)) << c;
}

TEST(RetryPolicy, FullJitterBackoffDoublesUpToTheCap) {
  std::atomic<int64_t> requests{1};
  // Below(n) is Next() % n: each value is one less than the interval it is drawn from, so
  // the delays show the intervals 25, 50, 100, 200, 250, 250 ms.
  FakeRandom random({24, 49, 99, 199, 249, 249, 0});
  RetryOptions o;
  o.max_attempts = 100;
  RetryPolicy policy(o, &requests, &random);
  RetryState s = policy.NewState();
  std::vector<int64_t> delays;
  for (int i = 0; i < 7; ++i) {
    s.AttemptStarted();
    RetryDecision d = policy.OnFailure(s, StatusCode::UNAVAILABLE, false);
    ASSERT_EQ(d.verdict, RetryVerdict::kRetry);
    delays.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(d.delay).count());
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{24, 49, 99, 199, 249, 249, 0}));
}

TEST(RetryPolicy, AttemptLimitAndFinalFailures) {
  std::atomic<int64_t> requests{1};
  FakeRandom random({0});
  RetryPolicy policy(RetryOptions{}, &requests, &random);  // 3 attempts
  RetryState s = policy.NewState();
  s.AttemptStarted();
  EXPECT_EQ(policy.OnFailure(s, StatusCode::UNAVAILABLE, false).verdict, RetryVerdict::kRetry);
  s.AttemptStarted();
  EXPECT_EQ(policy.OnFailure(s, StatusCode::RESOURCE_EXHAUSTED, false).verdict,
            RetryVerdict::kRetry);
  s.AttemptStarted();
  EXPECT_EQ(policy.OnFailure(s, StatusCode::UNAVAILABLE, false).verdict,
            RetryVerdict::kOutOfAttempts);

  RetryState t = policy.NewState();
  t.AttemptStarted();
  EXPECT_EQ(policy.OnFailure(t, StatusCode::INVALID_ARGUMENT, false).verdict,
            RetryVerdict::kNotRetryable);
  EXPECT_FALSE(t.holds_budget());  // a final failure takes no budget
  EXPECT_EQ(policy.OnFailure(t, StatusCode::DEADLINE_EXCEEDED, true).verdict,
            RetryVerdict::kNotRetryable);
}

// A 20% budget with a floor over a request count the test sets, and the choices drawing on it.
struct Budgeted {
  Budgeted(int64_t in_flight, uint32_t min)
      : requests(in_flight), policy(Options(min), &requests, &random) {}
  static RetryOptions Options(uint32_t min) {
    RetryOptions o;
    o.budget_percent = 20;
    o.budget_min = min;
    return o;
  }
  // Choice `i` (a new one when i is past the end) starts an attempt that fails UNAVAILABLE.
  RetryVerdict Fails(size_t i) {
    if (i >= states.size()) {
      states.push_back(policy.NewState());
      i = states.size() - 1;
    }
    states[i].AttemptStarted();
    return policy.OnFailure(states[i], StatusCode::UNAVAILABLE, false).verdict;
  }
  int64_t active() const { return policy.budget().active_retries(); }

  std::atomic<int64_t> requests;  // stands for the gateway's own counter
  FakeRandom random{0};
  RetryPolicy policy;
  std::vector<RetryState> states;
};

TEST(RetryPolicy, BudgetIsHeldUntilTheRetryIsAnswered) {
  Budgeted b(0, 2);
  EXPECT_EQ(b.Fails(0), RetryVerdict::kRetry);
  EXPECT_EQ(b.Fails(1), RetryVerdict::kRetry);
  EXPECT_EQ(b.active(), 2);
  EXPECT_EQ(b.Fails(2), RetryVerdict::kBudgetExhausted);
  // A choice retrying again keeps the one unit it holds.
  EXPECT_EQ(b.Fails(0), RetryVerdict::kRetry);
  EXPECT_EQ(b.active(), 2);
  // Its retry got a first token: the unit is free for another choice.
  b.states[0].Answered();
  EXPECT_FALSE(b.states[0].holds_budget());
  EXPECT_EQ(b.active(), 1);
  EXPECT_EQ(b.Fails(2), RetryVerdict::kRetry);
  // A state that goes away gives its unit back.
  b.states.clear();
  EXPECT_EQ(b.active(), 0);
}

TEST(RetryPolicy, BudgetFollowsTheGatewaysRequestCount) {
  Budgeted b(50, 1);
  int granted = 0;
  while (b.Fails(b.states.size()) == RetryVerdict::kRetry) ++granted;
  EXPECT_EQ(granted, 10);  // 20% of 50
  b.states.clear();
  b.requests = 10;  // the budget reads the count, it keeps no copy
  granted = 0;
  while (b.Fails(b.states.size()) == RetryVerdict::kRetry) ++granted;
  EXPECT_EQ(granted, 2);  // 20% of 10
}

}  // namespace
}  // namespace r1::gw
