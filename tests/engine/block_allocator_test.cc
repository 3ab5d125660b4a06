// The block allocator: plain allocation, and automatic prefix caching (reference counts, the
// LRU of cached free blocks and its eviction order, exact matching of chained blocks, content
// computed twice at once).
#include "worker/engine/block_allocator.h"

#include <gtest/gtest.h>

#include <numeric>
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

// A sequence as the scheduler keeps one: tokens, block table, memoized block hashes.
struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
  std::vector<uint64_t> hashes;
};

std::vector<int32_t> Range(int32_t from, int32_t n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

std::vector<int32_t> Cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Allocates blocks for all of `s`'s tokens and registers its full blocks, as after a prefill.
void Prefill(BlockAllocator& a, Seq& s) {
  ASSERT_TRUE(a.Allocate(BlocksFor(s.tokens.size(), 4) - static_cast<int32_t>(s.blocks.size()),
                         &s.blocks));
  a.Register(s.tokens, s.blocks, 0, static_cast<int32_t>(s.tokens.size()) / 4, &s.hashes);
}

TEST(PrefixCache, AFreedPrefixIsFoundAgainAndShared) {
  BlockAllocator a(10, 4, true);
  Seq x{Cat(Range(100, 12), {7, 8})};  // 3 full blocks and 2 tokens
  Prefill(a, x);
  const std::vector<int32_t> x_blocks = x.blocks;
  a.Free(&x.blocks);
  EXPECT_EQ(a.num_used(), 0);
  EXPECT_EQ(a.num_cached_free(), 3);  // the partial block is not cached

  // Same first 8 tokens, then different ones: two blocks hit.
  Seq y{Cat(Range(100, 8), Range(500, 9))};
  EXPECT_EQ(a.CountCached(y.tokens, 100, &y.hashes), 2);
  EXPECT_EQ(a.CountCached(y.tokens, 1, &y.hashes), 1);  // at most max_blocks
  EXPECT_EQ(a.AcquireCached(y.tokens, 100, &y.hashes, &y.blocks), 2);
  EXPECT_EQ(y.blocks, (std::vector<int32_t>{x_blocks[0], x_blocks[1]}));
  EXPECT_EQ(a.num_used(), 2);
  EXPECT_EQ(a.num_cached_free(), 1);

  // A third sequence shares them while y holds them: referenced twice.
  Seq z{Range(100, 12)};
  EXPECT_EQ(a.AcquireCached(z.tokens, 100, &z.hashes, &z.blocks), 3);
  EXPECT_EQ(a.num_used(), 3);
  a.Free(&y.blocks);
  EXPECT_EQ(a.num_used(), 3);  // z still holds them
  a.Free(&z.blocks);
  EXPECT_EQ(a.num_used(), 0);
  EXPECT_EQ(a.num_cached_free(), 3);
}

TEST(PrefixCache, ReclaimsPlainFreeBlocksFirstThenTheColdestTails) {
  BlockAllocator a(6, 4, true);
  Seq x{Range(0, 12)}, y{Range(50, 8)};
  Prefill(a, x);
  Prefill(a, y);
  a.Free(&x.blocks);  // x's blocks are colder than y's; x's tail colder than its head
  a.Free(&y.blocks);
  EXPECT_EQ(a.num_free(), 6);
  std::vector<int32_t> fresh;
  ASSERT_TRUE(a.Allocate(1, &fresh));  // the one never-used block
  Seq x2{Range(0, 12)}, y2{Range(50, 8)};
  EXPECT_EQ(a.CountCached(x2.tokens, 100, &x2.hashes), 3);
  ASSERT_TRUE(a.Allocate(1, &fresh));  // reclaims x's last block
  EXPECT_EQ(a.CountCached(x2.tokens, 100, &x2.hashes), 2);
  EXPECT_EQ(a.CountCached(y2.tokens, 100, &y2.hashes), 2);
  ASSERT_TRUE(a.Allocate(2, &fresh));  // then x's middle and head
  EXPECT_EQ(a.CountCached(x2.tokens, 100, &x2.hashes), 0);
  EXPECT_EQ(a.CountCached(y2.tokens, 100, &y2.hashes), 2);
  EXPECT_FALSE(a.Allocate(3, &fresh));
  ASSERT_TRUE(a.Allocate(2, &fresh));
  EXPECT_EQ(a.num_free(), 0);
  EXPECT_EQ(a.CountCached(y2.tokens, 100, &y2.hashes), 0);
}

TEST(PrefixCache, ABlockMatchesOnlyAfterItsOwnPrefix) {
  BlockAllocator a(8, 4, true);
  Seq x{Range(0, 8)};
  Prefill(a, x);
  a.Free(&x.blocks);
  // The same second block after another first block: no hit at all.
  Seq y{Cat(Range(40, 4), Range(4, 4))};
  EXPECT_EQ(a.CountCached(y.tokens, 100, &y.hashes), 0);
  // The first block reclaimed: the second, though still cached, cannot be reached.
  Seq fill{Range(900, 4 * 6)};
  ASSERT_TRUE(a.Allocate(6, &fill.blocks));  // the 6 plain free blocks
  std::vector<int32_t> one;
  ASSERT_TRUE(a.Allocate(1, &one));  // the coldest cached block: x's tail... (freed first)
  a.Free(&one);
  Seq x2{Range(0, 8)};
  EXPECT_EQ(a.CountCached(x2.tokens, 100, &x2.hashes), 1);  // ...so x's head still matches
  ASSERT_TRUE(a.Allocate(2, &one));  // now the head too
  EXPECT_EQ(a.CountCached(x2.tokens, 100, &x2.hashes), 0);
}

TEST(PrefixCache, ContentComputedTwiceAtOnceStaysFindable) {
  BlockAllocator a(16, 4, true);
  // Two sequences prefill the same prompt at the same time, in their own blocks.
  Seq x{Range(0, 8)}, y{Range(0, 8)};
  ASSERT_TRUE(a.Allocate(2, &x.blocks));
  ASSERT_TRUE(a.Allocate(2, &y.blocks));
  a.Register(x.tokens, x.blocks, 0, 2, &x.hashes);
  a.Register(y.tokens, y.blocks, 0, 2, &y.hashes);  // duplicates: y's stay private
  // y goes on alone: its next block chains onto x's copy of the prefix.
  y.tokens = Cat(y.tokens, Range(70, 4));
  ASSERT_TRUE(a.Allocate(1, &y.blocks));
  a.Register(y.tokens, y.blocks, 2, 3, &y.hashes);
  a.Free(&y.blocks);
  EXPECT_EQ(a.num_cached_free(), 1);  // y's third block; its private copies went back plain
  Seq z{Cat(Range(0, 8), Range(70, 5))};
  EXPECT_EQ(a.AcquireCached(z.tokens, 100, &z.hashes, &z.blocks), 3);
  EXPECT_EQ(z.blocks[0], x.blocks[0]);
  EXPECT_EQ(z.blocks[1], x.blocks[1]);
}

TEST(PrefixCache, OffCachesNothing) {
  BlockAllocator a(4, 4, false);
  Seq x{Range(0, 8)};
  Prefill(a, x);
  a.Free(&x.blocks);
  EXPECT_EQ(a.num_cached_free(), 0);
  Seq y{Range(0, 8)};
  EXPECT_EQ(a.CountCached(y.tokens, 100, &y.hashes), 0);
  EXPECT_EQ(a.AcquireCached(y.tokens, 100, &y.hashes, &y.blocks), 0);
}

TEST(PrefixCache, HashesChainOverThePrefix) {
  const std::vector<int32_t> t = {1, 2, 3, 4};
  EXPECT_EQ(HashBlock(0, t.data(), 4), HashBlock(0, t.data(), 4));
  EXPECT_NE(HashBlock(0, t.data(), 4), HashBlock(1, t.data(), 4));
  EXPECT_NE(HashBlock(0, t.data(), 4), HashBlock(0, t.data(), 3));
}

}  // namespace
}  // namespace r1::engine
