#include <gtest/gtest.h>

#include "gateway/upstream/retry_budget.h"

namespace r1::gw {
namespace {

TEST(RetryBudget, MinimumConcurrencyAlwaysAllowed) {
  std::atomic<int64_t> requests{0};
  RetryBudget b(20, 2, &requests);
  auto t1 = b.TryStartRetry();
  auto t2 = b.TryStartRetry();
  EXPECT_TRUE(t1 && t2);
  EXPECT_FALSE(b.TryStartRetry());
  t1.reset();  // the token gives its place back
  EXPECT_EQ(b.active_retries(), 1);
  EXPECT_TRUE(b.TryStartRetry());
}

TEST(RetryBudget, PercentOfRequestsInFlight) {
  std::atomic<int64_t> requests{50};
  RetryBudget b(20, 1, &requests);
  std::vector<RetryBudget::Token> tokens;
  while (auto t = b.TryStartRetry()) tokens.push_back(std::move(*t));
  EXPECT_EQ(tokens.size(), 10u);  // 20% of 50
  requests = 10;
  tokens.clear();
  EXPECT_EQ(b.active_retries(), 0);
  while (auto t = b.TryStartRetry()) tokens.push_back(std::move(*t));
  EXPECT_EQ(tokens.size(), 2u);  // 20% of 10
}

}  // namespace
}  // namespace r1::gw
