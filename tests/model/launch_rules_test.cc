// The CUDA kernels' launch rules (worker/model/cuda/launch_rules.h), host arithmetic only: the
// decode attention's split count and the tensor-core GEMV's persistent grid, on any machine.
#include "worker/model/cuda/launch_rules.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace r1::model::cuda {
namespace {

// One split under 16 tiles (1,024 keys); else 1 to 256 splits of at least 2 tiles each.
TEST(LaunchRulesTest, AttentionSplitsStayInBounds) {
  for (int64_t q : {1, 2, 7, 64, 256, 4096})
    for (int64_t len : {1, 64, 1023, 1024, 4096, 16384, 65536, 1 << 20})
      for (int sms : {0, 1, 78, 132}) {
        const int s = PagedAttentionSplits(q, 2, len, sms);
        const int64_t tiles = (len + 63) / 64;
        if (tiles < 16 || sms == 0) {
          EXPECT_EQ(s, 1) << q << " " << len << " " << sms;
        } else {
          EXPECT_GE(s, 1);
          EXPECT_LE(s, kMaxAttentionSplits);
          EXPECT_GE(tiles / s, 2) << q << " " << len << " " << sms;
        }
      }
}

// The counts the model was fitted for on a 132-SM H200 (docs/gpu.md, "The split count from a
// cost model": attention_bench's best or within 4% of it): whole waves of the 396 resident
// blocks at batch 16 to 64, 64-128 splits for one stream at 16k-32k keys.
TEST(LaunchRulesTest, AttentionSplitsFillWholeWaves) {
  EXPECT_EQ(PagedAttentionSplits(64, 2, 16384, 132), 3);   // 384 blocks: one wave of 396
  EXPECT_EQ(PagedAttentionSplits(64, 2, 32768, 132), 3);
  EXPECT_EQ(PagedAttentionSplits(32, 2, 16384, 132), 6);   // 384 blocks
  EXPECT_EQ(PagedAttentionSplits(16, 2, 32768, 132), 12);  // 384 blocks
  EXPECT_EQ(PagedAttentionSplits(1, 2, 16384, 132), 64);
  EXPECT_EQ(PagedAttentionSplits(1, 2, 32768, 132), 128);
  // A last wave of a few blocks costs nearly a full one: 16 splits at 16 x 32k (512 blocks)
  // are modelled slower than 12.
  EXPECT_GT(AttentionCost(32, 512, 16, 132), AttentionCost(32, 512, 12, 132));
}

// The GEMV's grid for the 1.5B shapes on 264 resident blocks of 8 warps (an H200 at 2 blocks an
// SM): gate/up takes 8 slices in 5 rounds on 224 blocks (15 steps a warp; the rule before gave 2
// slices in 2 rounds on 140, 24 steps), the lm_head stays at 1 slice, 9 rounds on every block.
TEST(LaunchRulesTest, GemvGridGivesWarpsTheFewestSteps) {
  const GemvTcGrid gate_up = GemvTcGridFor(1120, 24, 2, 264, 8);
  EXPECT_EQ(gate_up.split, 8);
  EXPECT_EQ(gate_up.rounds, 5);
  EXPECT_EQ(gate_up.blocks, 224);
  const GemvTcGrid lm_head = GemvTcGridFor(18992, 24, 2, 264, 8);
  EXPECT_EQ(lm_head.split, 1);
  EXPECT_EQ(lm_head.rounds, 9);
  EXPECT_EQ(lm_head.blocks, 264);
  const GemvTcGrid down = GemvTcGridFor(192, 140, 2, 264, 8);
  EXPECT_EQ(down.split, 8);
  EXPECT_EQ(down.rounds, 1);
  EXPECT_EQ(down.blocks, 192);
  // Every tile is covered, no slice is under min_steps, and no block is idle in every round.
  for (int64_t tiles : {1, 7, 192, 1120, 18992, 100000})
    for (int steps : {2, 3, 6, 24, 140})
      for (int resident : {1, 132, 264}) {
        const GemvTcGrid g = GemvTcGridFor(tiles, steps, 2, resident, 8);
        const int64_t per_round = 8 / g.split;
        EXPECT_GE(g.blocks * per_round * g.rounds, tiles) << tiles << " " << steps << " " << resident;
        EXPECT_LT((g.blocks - 1) * per_round * g.rounds, tiles) << tiles << " " << steps << " " << resident;
        EXPECT_LE(g.blocks, resident);
        EXPECT_TRUE(g.split == 1 || steps / g.split >= 2) << tiles << " " << steps;
      }
}

}  // namespace
}  // namespace r1::model::cuda
