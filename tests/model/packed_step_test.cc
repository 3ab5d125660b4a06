// The CUDA step's planner (packed_step.h) and the graph bucket policy (graph_buckets.h): both
// torch-free, so checked here on any machine. The reference for a graph step is the plan of
// the same batch padded by hand.
#include "worker/model/packed_step.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "worker/model/graph_buckets.h"

namespace r1::model {
namespace {

std::vector<int32_t> Slice(const PackedStep& p, int64_t at, int64_t n) {
  return std::vector<int32_t>(p.host.begin() + at, p.host.begin() + at + n);
}

SequenceStep Seq(int64_t cached, int64_t fresh, std::vector<int32_t> table, bool logits = true) {
  SequenceStep s;
  s.num_cached = cached;
  s.num_new = fresh;
  s.block_table = std::move(table);
  s.want_logits = logits;
  return s;
}

TEST(PackStep, DecodeBatchLayout) {
  StepBatch b;
  b.tokens = {11, 12, 13};
  b.seqs = {Seq(5, 1, {7}), Seq(20, 1, {3, 9}), Seq(0, 1, {4})};
  PackOptions o;
  o.block_size = 16;
  PackedStep p = PackStep(b, o);
  const PackedLayout& L = p.lay;
  EXPECT_EQ(L.T, 3);
  EXPECT_EQ(L.Bq, 3);
  EXPECT_EQ(L.S, 3);
  EXPECT_EQ(L.MB, 2);  // the longest context, 21 keys, spans two blocks
  EXPECT_EQ(L.R, 3);
  EXPECT_EQ(L.F, 0);
  EXPECT_TRUE(L.identity_logits);
  EXPECT_EQ(static_cast<int64_t>(p.host.size()), L.size());
  EXPECT_EQ(Slice(p, 0, 3), (std::vector<int32_t>{11, 12, 13}));
  EXPECT_EQ(Slice(p, 3, 3), (std::vector<int32_t>{5, 20, 0}));                  // positions
  EXPECT_EQ(Slice(p, 6, 3), (std::vector<int32_t>{7 * 16 + 5, 9 * 16 + 4, 4 * 16}));  // slots
  EXPECT_EQ(Slice(p, L.at_q_rows(), 3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(Slice(p, L.at_q_rows() + 3, 3), (std::vector<int32_t>{6, 21, 1}));  // query lengths
  EXPECT_EQ(Slice(p, L.at_tables(), 6), (std::vector<int32_t>{7, 0, 3, 9, 4, 0}));
  EXPECT_EQ(Slice(p, L.at_logit_rows(), 3), (std::vector<int32_t>{0, 1, 2}));
}

TEST(PackStep, GraphPaddingEqualsTheBatchPaddedByHand) {
  StepBatch b;
  b.tokens = {11, 12, 13};
  b.seqs = {Seq(5, 1, {7}), Seq(20, 1, {3, 9}), Seq(40, 1, {1, 2, 6})};
  PackOptions o;
  o.pad_rows = 4;
  o.table_width = 8;  // a bucket of 128 keys at 16 a block
  PackedStep p = PackStep(b, o);
  // By hand: row 3 repeats row 0.
  StepBatch hand = b;
  hand.tokens.push_back(b.tokens[0]);
  hand.seqs.push_back(b.seqs[0]);
  PackOptions ho;
  ho.table_width = 8;
  PackedStep want = PackStep(hand, ho);
  EXPECT_EQ(p.host, want.host);
  EXPECT_EQ(p.lay.T, 4);
  EXPECT_EQ(p.lay.MB, 8);
  EXPECT_EQ(p.lay.R, 4);
}

TEST(PackStep, LongChunksGoToFlashWithTheirContextGathered) {
  // A decode, a 600-token chunk over 1,000 cached tokens, and a short 3-token chunk.
  StepBatch b;
  std::vector<int32_t> table;
  for (int i = 0; i < 100; ++i) table.push_back(1000 - i);
  b.seqs = {Seq(30, 1, {5, 6}), Seq(1000, 600, table, false), Seq(10, 3, {8})};
  b.tokens.assign(604, 1);
  PackOptions o;
  PackedStep p = PackStep(b, o);
  const PackedLayout& L = p.lay;
  EXPECT_EQ(L.T, 604);
  EXPECT_EQ(L.F, 1);
  EXPECT_EQ(L.Qf, 600);
  EXPECT_EQ(L.Kg, 1600);
  EXPECT_EQ(L.max_q, 600);
  EXPECT_EQ(L.max_k, 1600);
  EXPECT_EQ(L.Bq, 4);  // the decode and the 3-token chunk's rows
  EXPECT_EQ(L.S, 2);
  EXPECT_EQ(L.max_paged_len, 31);
  EXPECT_EQ(L.R, 2);   // the long chunk wants no logits
  EXPECT_FALSE(L.identity_logits);
  EXPECT_EQ(Slice(p, L.at_q_rows(), 4), (std::vector<int32_t>{0, 601, 602, 603}));
  EXPECT_EQ(Slice(p, L.at_q_rows() + 4, 4), (std::vector<int32_t>{31, 11, 12, 13}));
  EXPECT_EQ(Slice(p, L.at_q_rows() + 8, 4), (std::vector<int32_t>{0, 1, 1, 1}));  // paged sequence index
  EXPECT_EQ(Slice(p, L.at_logit_rows(), 2), (std::vector<int32_t>{0, 603}));
  EXPECT_EQ(Slice(p, L.at_cu_q(), 2), (std::vector<int32_t>{0, 600}));
  EXPECT_EQ(Slice(p, L.at_cu_k(), 2), (std::vector<int32_t>{0, 1600}));
  std::vector<int32_t> gather = Slice(p, L.at_gather(), 1600);
  for (int pos : {0, 15, 16, 999, 1599})
    EXPECT_EQ(gather[pos], table[pos / 16] * 16 + pos % 16) << pos;
  std::vector<int32_t> rows = Slice(p, L.at_flash_rows(), 600);
  EXPECT_EQ(rows.front(), 1);
  EXPECT_EQ(rows.back(), 600);
  EXPECT_EQ(static_cast<int64_t>(p.host.size()), L.size());
  // Flash off: every query is paged.
  o.flash_min_tokens = -1;
  PackedStep q = PackStep(b, o);
  EXPECT_EQ(q.lay.F, 0);
  EXPECT_EQ(q.lay.Bq, 604);
  EXPECT_EQ(q.lay.max_paged_len, 1600);
}

// want_all_logits (the prompt's log-probabilities): every new token of that chunk is a logit
// row, in order, between the rows of its neighbours.
TEST(PackStep, AllLogitRowsOfAScoredChunk) {
  StepBatch b;
  SequenceStep scored = Seq(8, 4, {2, 3}, false);
  scored.want_all_logits = true;
  b.seqs = {Seq(30, 1, {5, 6}), scored, Seq(10, 3, {8})};
  b.tokens.assign(8, 1);
  PackedStep p = PackStep(b, PackOptions());
  EXPECT_EQ(p.lay.R, 6);
  EXPECT_EQ(Slice(p, p.lay.at_logit_rows(), 6), (std::vector<int32_t>{0, 1, 2, 3, 4, 7}));
  EXPECT_FALSE(p.lay.identity_logits);
}

TEST(PackStep, SmallFreshPromptsStayPaged) {
  // 200 x 200 = 40,000 query-key pairs: under flash_min_work, the paged kernel serves it.
  StepBatch b;
  b.seqs = {Seq(0, 200, std::vector<int32_t>(13, 1))};
  b.tokens.assign(200, 1);
  EXPECT_EQ(PackStep(b, PackOptions()).lay.F, 0);
  b.seqs = {Seq(0, 300, std::vector<int32_t>(19, 1))};
  b.tokens.assign(300, 1);
  EXPECT_EQ(PackStep(b, PackOptions()).lay.F, 1);
}

TEST(GraphBuckets, PowersOfTwoUpToTheLimits) {
  EXPECT_EQ(GraphBuckets::For(1, 1), (GraphBucket{1, 64}));
  EXPECT_EQ(GraphBuckets::For(3, 65), (GraphBucket{4, 128}));
  EXPECT_EQ(GraphBuckets::For(256, 32768), (GraphBucket{256, 32768}));
  EXPECT_FALSE(GraphBuckets::For(257, 10).has_value());
  EXPECT_FALSE(GraphBuckets::For(1, GraphBuckets::kMaxContext + 1).has_value());
  std::vector<GraphBucket> all = GraphBuckets::UpTo(5, 100);
  EXPECT_EQ(all.size(), 4u * 2u);  // batches 1, 2, 4, 8 x contexts 64, 128
  EXPECT_EQ(all.front(), (GraphBucket{1, 64}));
  EXPECT_EQ(all.back(), (GraphBucket{8, 128}));
  // Every step warm-up prepares maps to a bucket it captured.
  for (int64_t b = 1; b <= 5; ++b)
    for (int64_t len = 1; len <= 100; len += 9)
      EXPECT_NE(std::find(all.begin(), all.end(), *GraphBuckets::For(b, len)), all.end());
}

}  // namespace
}  // namespace r1::model
