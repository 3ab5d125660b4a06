#include <gtest/gtest.h>

#include "gateway/upstream/backoff.h"

namespace r1::gw {
namespace {

// A random source that always returns the largest value, so each delay is its ceiling - 1.
class MaxRandom final : public Random {
 public:
  uint64_t Next() override { return ~0ull; }
};

TEST(JitteredBackoff, CeilingDoublesUpToTheCap) {
  MaxRandom random;
  JitteredBackoff b(25, 250, &random);
  // Below(n) = Next() % n; with Next() = 2^64-1 that is n-1 for these n... check directly:
  std::vector<uint64_t> ceilings = {25, 50, 100, 200, 250, 250, 250};
  for (uint64_t c : ceilings) EXPECT_EQ(b.NextMs(), (~0ull) % c) << c;
  b.Reset();
  EXPECT_EQ(b.NextMs(), (~0ull) % 25);
}

TEST(JitteredBackoff, FullJitterStaysBelowTheCeiling) {
  SystemRandom random(7);
  for (int trial = 0; trial < 200; ++trial) {
    JitteredBackoff b(25, 250, &random);
    uint64_t ceiling = 25;
    for (int i = 0; i < 8; ++i) {
      EXPECT_LT(b.NextMs(), ceiling);
      ceiling = std::min<uint64_t>(ceiling * 2, 250);
    }
  }
}

TEST(JitteredBackoff, ZeroIsPossible) {
  FakeRandom random({0});
  JitteredBackoff b(25, 250, &random);
  EXPECT_EQ(b.NextMs(), 0u);
}

}  // namespace
}  // namespace r1::gw
