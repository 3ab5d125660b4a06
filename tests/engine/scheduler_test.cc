#include "worker/engine/scheduler.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

namespace r1::engine {
namespace {

std::unique_ptr<Sequence> MakeSeq(uint64_t id, int32_t prompt_len) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->tokens.assign(prompt_len, 7);
  s->num_prompt = prompt_len;
  return s;
}

// Runs the plan as the engine would: commit, then append a token to each sampled sequence.
void RunStep(Scheduler& s, const StepPlan& plan) {
  s.Commit(plan);
  for (const ScheduledChunk& c : plan.chunks) {
    if (c.sample) c.seq->tokens.push_back(1);
  }
}

TEST(Scheduler, PrefillThenDecode) {
  BlockAllocator alloc(8);
  Scheduler s({/*max_running=*/4, /*token_budget=*/64, /*block_size=*/4}, &alloc);
  auto a = MakeSeq(1, 10);
  s.Add(a.get());
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].num_new, 10);
  EXPECT_TRUE(p.chunks[0].sample);
  EXPECT_EQ(a->blocks.size(), 3u);
  RunStep(s, p);
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].num_new, 1);
  EXPECT_EQ(a->blocks.size(), 3u);  // position 10 fits in block 2
  s.Remove(a.get());
  EXPECT_EQ(alloc.num_used(), 0);
  EXPECT_TRUE(s.empty());
}

TEST(Scheduler, ChunkedPrefillKeepsDecodesFlowing) {
  BlockAllocator alloc(100);
  Scheduler s({4, /*token_budget=*/16, 4}, &alloc);
  auto a = MakeSeq(1, 3);
  s.Add(a.get());
  RunStep(s, s.Schedule());  // a prefilled, now decoding
  auto b = MakeSeq(2, 40);
  s.Add(b.get());
  for (int step = 0; step < 3; ++step) {
    StepPlan p = s.Schedule();
    ASSERT_EQ(p.chunks.size(), 2u);
    EXPECT_EQ(p.chunks[0].seq, a.get());
    EXPECT_EQ(p.chunks[0].num_new, 1);
    EXPECT_EQ(p.chunks[1].seq, b.get());
    EXPECT_EQ(p.chunks[1].num_new, step < 2 ? 15 : 10);
    EXPECT_EQ(p.chunks[1].sample, step == 2);
    EXPECT_LE(p.num_tokens, 16);
    RunStep(s, p);
  }
  EXPECT_EQ(b->num_output(), 1);
}

TEST(Scheduler, ShortPromptGoesBeforeALongPrefill) {
  BlockAllocator alloc(100);
  Scheduler s({4, 16, 4}, &alloc);
  auto long_seq = MakeSeq(1, 100);
  s.Add(long_seq.get());
  RunStep(s, s.Schedule());
  auto short_seq = MakeSeq(2, 5);
  s.Add(short_seq.get());
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].seq, short_seq.get());
  EXPECT_EQ(p.chunks[0].num_new, 5);
  EXPECT_TRUE(p.chunks[0].sample);
  EXPECT_EQ(p.chunks[1].num_new, 11);
}

TEST(Scheduler, RespectsMaxRunning) {
  BlockAllocator alloc(100);
  Scheduler s({2, 64, 4}, &alloc);
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (int i = 0; i < 3; ++i) {
    seqs.push_back(MakeSeq(i, 4));
    s.Add(seqs.back().get());
  }
  StepPlan p = s.Schedule();
  EXPECT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(s.num_running(), 2);
  EXPECT_EQ(s.num_waiting(), 1);
  EXPECT_EQ(s.waiting().front(), seqs[2].get());
}

TEST(Scheduler, PreemptsNewestWhenBlocksRunOutAndRecomputes) {
  BlockAllocator alloc(4);
  Scheduler s({4, 64, 4}, &alloc);
  auto a = MakeSeq(1, 4);
  auto b = MakeSeq(2, 4);
  s.Add(a.get());
  s.Add(b.get());
  RunStep(s, s.Schedule());  // 2 blocks used, both have 5 tokens now
  EXPECT_EQ(alloc.num_used(), 2);
  RunStep(s, s.Schedule());  // each needs a second block: 4 used, 6 tokens each
  EXPECT_EQ(alloc.num_used(), 4);
  RunStep(s, s.Schedule());  // 7 tokens each
  RunStep(s, s.Schedule());  // 8 tokens each
  RunStep(s, s.Schedule());  // 9 tokens each (positions 0..7 cached)
  // Position 8 needs a third block for a: no free block, so b (newest) is preempted.
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.preempted.size(), 1u);
  EXPECT_EQ(p.preempted[0], b.get());
  EXPECT_EQ(b->num_cached, 0);
  EXPECT_EQ(b->num_preemptions, 1);
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, a.get());
  EXPECT_EQ(s.waiting().front(), b.get());
  RunStep(s, p);
  // Once a finishes, b is prefilled again with its prompt and output (9 tokens), then samples.
  s.Remove(a.get());
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, b.get());
  EXPECT_EQ(p.chunks[0].num_new, 9);
  EXPECT_TRUE(p.chunks[0].sample);
}

TEST(Scheduler, PartialPrefillsThatFillTheCacheDoNotDeadlock) {
  BlockAllocator alloc(4);  // 16 tokens
  Scheduler s({4, /*token_budget=*/8, 4}, &alloc);
  auto a = MakeSeq(1, 12);
  auto b = MakeSeq(2, 12);
  s.Add(a.get());
  s.Add(b.get());
  int steps = 0;
  bool done[2] = {false, false};
  while (!done[0] || !done[1]) {
    ASSERT_LT(++steps, 50) << "no progress";
    StepPlan p = s.Schedule();
    ASSERT_FALSE(p.chunks.empty());
    RunStep(s, p);
    for (int i = 0; i < 2; ++i) {
      Sequence* q = i == 0 ? a.get() : b.get();
      if (!done[i] && q->num_output() == 1) {
        s.Remove(q);  // finished after its first token
        done[i] = true;
      }
    }
  }
  EXPECT_EQ(alloc.num_used(), 0);
}

// Shortest-prefill-first alone would let a steady stream of short prompts starve a long one:
// each step their prefills fill the token budget first. max_wait_steps after its arrival the
// long one goes first, and stays first until its prefill is done.
TEST(Scheduler, LongPromptIsNotStarvedByShortOnes) {
  BlockAllocator alloc(10000);
  const int32_t wait = 10;
  Scheduler s({/*max_running=*/64, /*token_budget=*/32, /*block_size=*/4, /*max_wait_steps=*/wait}, &alloc);
  auto run = [&]() {
    std::vector<std::unique_ptr<Sequence>> shorts;
    auto big = MakeSeq(1000, 200);
    s.Add(big.get());
    int first_fed = -1, done_at = -1;
    for (int step = 0; step < 400 && done_at < 0; ++step) {
      // Two new 16-token prompts every step: together they fill the 32-token budget.
      for (int k = 0; k < 2; ++k) {
        shorts.push_back(MakeSeq(static_cast<uint64_t>(shorts.size() + 1), 16));
        s.Add(shorts.back().get());
      }
      StepPlan p = s.Schedule();
      RunStep(s, p);
      for (const ScheduledChunk& c : p.chunks) {
        if (c.seq == big.get() && first_fed < 0) first_fed = step;
        if (c.seq != big.get() && c.sample) s.Remove(c.seq);  // shorts end after one token
      }
      if (big->num_output() > 0) done_at = step;
    }
    s.Remove(big.get());
    for (auto& q : shorts) s.Remove(q.get());
    return std::pair<int, int>{first_fed, done_at};
  };
  auto [first_fed, done_at] = run();
  ASSERT_GE(first_fed, 0) << "the long prompt was never fed";
  EXPECT_LE(first_fed, wait + 1);
  ASSERT_GE(done_at, 0) << "the long prompt never finished its prefill";
  // Once overdue it takes the whole budget: 200 tokens at 32 a step.
  EXPECT_LE(done_at, wait + 200 / 32 + 1);
  EXPECT_EQ(alloc.num_used(), 0);
}

// Admission headroom: a queued sequence waits while admitting it would leave fewer free blocks
// than the running sequences need for the rest of their prompts plus the headroom; a running
// sequence is never held back, and with nothing running anyone is admitted.
TEST(Scheduler, AdmissionKeepsHeadroomForTheRunning) {
  BlockAllocator alloc(10);  // 40 tokens in blocks of 4
  SchedulerConfig cfg{/*max_running=*/8, /*token_budget=*/64, /*block_size=*/4};
  cfg.admit_headroom_tokens = 8;  // two blocks a running sequence
  Scheduler s(cfg, &alloc);
  auto a = MakeSeq(1, 10);  // 3 blocks
  s.Add(a.get());
  StepPlan p = s.Schedule();  // nothing running: a is admitted whatever the headroom
  ASSERT_EQ(p.chunks.size(), 1u);
  RunStep(s, p);              // a: 11 tokens in 3 blocks; its headroom wants 5 blocks (19 tokens)
  auto b = MakeSeq(2, 12);    // 3 blocks for its prompt
  s.Add(b.get());
  // Free: 7. a's reserve: 5 - 3 = 2. b's chunk takes 3, leaving 4 >= 2: admitted.
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[1].seq, b.get());
  RunStep(s, p);              // a 12 tokens (3 blocks), b 13 tokens (4 blocks: its first token)
  auto c = MakeSeq(3, 4);     // 1 block
  s.Add(c.get());
  // Free: 10 - 3 - 3 = 4 (b's 13th token gets its block this step: 3). Reserve: a 5 - 3 = 2,
  // b BlocksFor(13 + 8) = 6 - 4 = 2: 4 blocks. c's chunk would leave 2: c waits.
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u) << "c was admitted into the running sequences' headroom";
  EXPECT_EQ(s.waiting().front(), c.get());
  RunStep(s, p);
  // Without headroom it would have gone in.
  BlockAllocator alloc0(10);
  Scheduler s0({8, 64, 4}, &alloc0);
  auto a0 = MakeSeq(1, 10), b0 = MakeSeq(2, 12), c0 = MakeSeq(3, 4);
  s0.Add(a0.get());
  RunStep(s0, s0.Schedule());
  s0.Add(b0.get());
  RunStep(s0, s0.Schedule());
  s0.Add(c0.get());
  EXPECT_EQ(s0.Schedule().chunks.size(), 3u);
  // Once a finishes, its blocks come back and c is admitted.
  s.Remove(a.get());
  p = s.Schedule();
  bool c_in = false;
  for (const ScheduledChunk& ch : p.chunks) c_in |= ch.seq == c.get();
  EXPECT_TRUE(c_in);
  s.Remove(b.get());
  s.Remove(c.get());
  EXPECT_EQ(alloc.num_used(), 0);
}

// Under pressure the headroom trades admissions for preemptions: the same closed loop of
// requests through a small cache preempts far less, and so feeds fewer tokens a generated
// token (a preempted sequence's prefill is fed again). Steps are not the measure: here a step
// holds any mix of prefill and decode, which on a device cost very different times
// (bench/scheduler_sim.cc models that).
TEST(Scheduler, HeadroomPreemptsLessUnderPressure) {
  struct Run {
    int64_t preemptions = 0, fed = 0, generated = 0;
  };
  auto run = [](int32_t headroom) {
    BlockAllocator alloc(64);  // 256 tokens
    SchedulerConfig cfg{/*max_running=*/16, /*token_budget=*/64, /*block_size=*/4};
    cfg.admit_headroom_tokens = headroom;
    Scheduler s(cfg, &alloc);
    std::vector<std::unique_ptr<Sequence>> live;
    std::vector<int32_t> target;
    uint64_t next = 0;
    auto submit = [&] {
      ++next;
      live.push_back(MakeSeq(next, 8 + static_cast<int32_t>(next * 7 % 24)));
      target.push_back(20 + static_cast<int32_t>(next * 13 % 40));
      s.Add(live.back().get());
    };
    for (int i = 0; i < 12; ++i) submit();
    Run r;
    for (int step = 0; step < 2000; ++step) {
      StepPlan p = s.Schedule();
      r.preemptions += static_cast<int64_t>(p.preempted.size());
      for (const ScheduledChunk& c : p.chunks) {
        r.fed += c.num_new;
        r.generated += c.sample;
      }
      RunStep(s, p);
      for (size_t i = 0; i < live.size();) {
        if (live[i]->num_output() >= target[i]) {
          s.Remove(live[i].get());
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
          target.erase(target.begin() + static_cast<std::ptrdiff_t>(i));
          submit();
        } else {
          ++i;
        }
      }
    }
    for (auto& q : live) s.Remove(q.get());
    EXPECT_EQ(alloc.num_used(), 0);
    return r;
  };
  const Run r0 = run(0), r16 = run(16);
  const double per0 = static_cast<double>(r0.fed) / static_cast<double>(r0.generated);
  const double per16 = static_cast<double>(r16.fed) / static_cast<double>(r16.generated);
  std::printf("# 12 streams, 256-token cache, 2,000 steps: headroom 0: %ld preemptions, %.2f tokens fed a "
              "generated token; headroom 16: %ld preemptions, %.2f\n",
              r0.preemptions, per0, r16.preemptions, per16);
  EXPECT_GT(r0.preemptions, 0) << "the loop never filled the cache";
  EXPECT_LT(r16.preemptions * 2, r0.preemptions);
  EXPECT_LT(per16, per0);
}

}  // namespace
}  // namespace r1::engine

namespace r1::engine {
namespace {

// A sequence with the given tokens (all prompt).
std::unique_ptr<Sequence> SeqOf(uint64_t id, std::vector<int32_t> tokens) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->tokens = std::move(tokens);
  s->num_prompt = s->num_tokens();
  return s;
}

std::vector<int32_t> Ids(int32_t from, int32_t n) {
  std::vector<int32_t> v;
  for (int32_t i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

std::vector<int32_t> Join(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs a sequence alone until it has `out` output tokens, then removes it.
void RunToEnd(Scheduler& s, Sequence* q, int32_t out) {
  s.Add(q);
  for (int i = 0; i < 100 && q->num_output() < out; ++i) RunStep(s, s.Schedule());
  s.Remove(q);
}

TEST(SchedulerPrefixCache, AdmissionStartsAfterTheCachedPrefix) {
  BlockAllocator alloc(20, 4, /*prefix_caching=*/true);
  Scheduler s({4, 64, 4}, &alloc);
  auto a = SeqOf(1, Ids(100, 10));
  RunToEnd(s, a.get(), 3);  // 13 tokens: blocks 0..2 full and registered
  EXPECT_EQ(s.prefix_cache_queries(), 10);
  EXPECT_EQ(s.prefix_cache_hits(), 0);
  // The same 8 first tokens, then others: two blocks come from the cache.
  auto b = SeqOf(2, Join(Ids(100, 8), Ids(900, 3)));
  s.Add(b.get());
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].num_new, 3);
  EXPECT_EQ(b->num_cached, 8);
  EXPECT_TRUE(p.chunks[0].sample);
  EXPECT_EQ(s.prefix_cache_queries(), 10 + 11);
  EXPECT_EQ(s.prefix_cache_hits(), 8);
  RunStep(s, p);
  s.Remove(b.get());
  // A prompt that is all cached still computes its last token (for the logits): 12 tokens,
  // 3 cached blocks, but only 2 are taken.
  auto c = SeqOf(3, Ids(100, 12));
  s.Add(c.get());
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(c->num_cached, 8);
  EXPECT_EQ(p.chunks[0].num_new, 4);
  RunStep(s, p);
  s.Remove(c.get());
  EXPECT_EQ(alloc.num_used(), 0);
}

TEST(SchedulerPrefixCache, APreemptedSequenceFindsItsBlocksAgain) {
  BlockAllocator alloc(4, 4, /*prefix_caching=*/true);
  Scheduler s({4, 64, 4}, &alloc);
  auto a = SeqOf(1, Ids(10, 4));
  auto b = SeqOf(2, Ids(50, 4));
  s.Add(a.get());
  s.Add(b.get());
  for (int i = 0; i < 5; ++i) RunStep(s, s.Schedule());  // 9 tokens each, 2 blocks each
  StepPlan p = s.Schedule();  // a needs a third block: b is preempted
  ASSERT_EQ(p.preempted.size(), 1u);
  ASSERT_EQ(p.preempted[0], b.get());
  EXPECT_EQ(b->num_registered, 0);
  RunStep(s, p);  // a's new block reclaimed b's cold tail; b's head is still cached
  s.Remove(a.get());
  const int64_t hits = s.prefix_cache_hits();
  p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, b.get());
  EXPECT_EQ(b->num_cached, 4);       // the head block came back from the cache...
  EXPECT_EQ(p.chunks[0].num_new, 5);  // ...so 5 of its 9 tokens are recomputed
  EXPECT_EQ(s.prefix_cache_hits() - hits, 4);
  RunStep(s, p);
  EXPECT_EQ(b->num_registered, 2);
}

TEST(SchedulerPrefixCache, TheCachedPrefixCountsInShortestPrefillFirst) {
  BlockAllocator alloc(100, 4, /*prefix_caching=*/true);
  Scheduler s({4, /*token_budget=*/8, 4}, &alloc);
  auto warm = SeqOf(1, Ids(100, 40));
  RunToEnd(s, warm.get(), 1);
  // 40 tokens of which 36 are cached (4 to compute) against 6 uncached ones: the first goes
  // first, and both fit the 8-token budget only in that order.
  auto shorter = SeqOf(2, Ids(500, 6));
  auto cached = SeqOf(3, Ids(100, 40));
  s.Add(shorter.get());
  s.Add(cached.get());
  StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].seq, cached.get());
  EXPECT_EQ(p.chunks[0].num_new, 4);
  EXPECT_EQ(p.chunks[1].seq, shorter.get());
  EXPECT_EQ(p.chunks[1].num_new, 4);
}

TEST(SchedulerPrefixCache, OffCountsNothing) {
  BlockAllocator alloc(20);
  Scheduler s({4, 64, 4}, &alloc);
  auto a = SeqOf(1, Ids(100, 10));
  RunToEnd(s, a.get(), 2);
  auto b = SeqOf(2, Ids(100, 10));
  s.Add(b.get());
  StepPlan p = s.Schedule();
  EXPECT_EQ(p.chunks[0].num_new, 10);
  EXPECT_EQ(s.prefix_cache_queries(), 0);
  EXPECT_EQ(s.prefix_cache_hits(), 0);
}

}  // namespace
}  // namespace r1::engine
