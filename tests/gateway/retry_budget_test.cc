#include <gtest/gtest.h>

#include "gateway/upstream/retry_budget.h"

namespace r1::gw {
namespace {

TEST(RetryBudget, MinimumConcurrencyAlwaysAllowed) {
  RetryBudget b(20, 2);
  EXPECT_TRUE(b.TryStartRetry());
  EXPECT_TRUE(b.TryStartRetry());
  EXPECT_FALSE(b.TryStartRetry());
  b.RetryFinished();
  EXPECT_TRUE(b.TryStartRetry());
}

TEST(RetryBudget, PercentOfActiveRequests) {
  RetryBudget b(20, 1);
  for (int i = 0; i < 50; ++i) b.RequestStarted();
  int granted = 0;
  while (b.TryStartRetry()) ++granted;
  EXPECT_EQ(granted, 10);  // 20% of 50
  for (int i = 0; i < 40; ++i) b.RequestFinished();
  for (int i = 0; i < 10; ++i) b.RetryFinished();
  granted = 0;
  while (b.TryStartRetry()) ++granted;
  EXPECT_EQ(granted, 2);  // 20% of 10
}

}  // namespace
}  // namespace r1::gw
