#include <gtest/gtest.h>

#include <map>

#include "gateway/upstream/balancer.h"

namespace r1::gw {
namespace {

TEST(LeastLoaded, PicksTheSmallest) {
  SystemRandom random(1);
  EXPECT_EQ(PickLeastLoaded({}, &random), -1);
  EXPECT_EQ(PickLeastLoaded({3}, &random), 0);
  EXPECT_EQ(PickLeastLoaded({3, 1, 2}, &random), 1);
  EXPECT_EQ(PickLeastLoaded({0, 5, 5}, &random), 0);
}

TEST(LeastLoaded, TiesAreBrokenUniformly) {
  SystemRandom random(3);
  std::map<int, int> counts;
  const int n = 30000;
  for (int i = 0; i < n; ++i) ++counts[PickLeastLoaded({2, 1, 4, 1, 1}, &random)];
  EXPECT_EQ(counts.count(0) + counts.count(2), 0u);
  for (int idx : {1, 3, 4}) {
    EXPECT_GT(counts[idx], n / 3 - n / 30) << idx;
    EXPECT_LT(counts[idx], n / 3 + n / 30) << idx;
  }
}

TEST(LeastLoaded, FakeRandomDecidesTies) {
  // Reservoir: at the second tie Below(2)==0 takes it, at the third Below(3)!=0 keeps it.
  FakeRandom random({0, 1});
  EXPECT_EQ(PickLeastLoaded({1, 1, 1}, &random), 1);
}

}  // namespace
}  // namespace r1::gw
