#include "worker/engine/block_allocator.h"

#include <gtest/gtest.h>

#include <set>

namespace r1::engine {
namespace {

TEST(BlockAllocator, AllocatesDistinctBlocksAndFreesThem) {
  BlockAllocator a(4);
  std::vector<int32_t> x, y;
  ASSERT_TRUE(a.Allocate(3, &x));
  EXPECT_EQ(a.num_used(), 3);
  EXPECT_FALSE(a.Allocate(2, &y));
  EXPECT_TRUE(y.empty());  // all or nothing
  ASSERT_TRUE(a.Allocate(1, &y));
  std::set<int32_t> all(x.begin(), x.end());
  all.insert(y.begin(), y.end());
  EXPECT_EQ(all, (std::set<int32_t>{0, 1, 2, 3}));
  a.Free(&x);
  EXPECT_TRUE(x.empty());
  EXPECT_EQ(a.num_free(), 3);
  a.Free(&y);
  EXPECT_EQ(a.num_used(), 0);
}

TEST(BlockAllocator, BlocksFor) {
  EXPECT_EQ(BlocksFor(0, 16), 0);
  EXPECT_EQ(BlocksFor(1, 16), 1);
  EXPECT_EQ(BlocksFor(16, 16), 1);
  EXPECT_EQ(BlocksFor(17, 16), 2);
}

}  // namespace
}  // namespace r1::engine
