// Continuous batching: which sequences run in the next step, and how many tokens each feeds.
// Torch-free and clock-free, so it is unit tested directly.
//
// Each step, under a token budget (--prefill-chunk):
//  1. every running sequence with one uncached token decodes (always; one token each). When a
//     decode needs a block and none is free, the newest running sequence is preempted: its
//     blocks are freed and it goes back to the front of the queue to be recomputed.
//  2. the rest of the budget goes to prefill chunks: sequences part-way through their prompt
//     and queued sequences (FIFO, while there is room for more running ones), shortest
//     remaining prefill first, so a short prompt is not stuck behind a 4,000-token one; but
//     sequences queued max_wait_steps steps ago or more come before all of those, in arrival
//     order, so a long prompt cannot starve behind a stream of short ones.
//     Admission headroom (admit_headroom_tokens > 0): a queued sequence is admitted only if,
//     after its first chunk, the free blocks still hold every running sequence's unfinished
//     prompt plus that many more tokens each. Without it a sequence is admitted whenever its
//     chunk fits, and under KV pressure the running sequences' next blocks then preempt the
//     newest, which is usually the one just admitted: its prefill is thrown away and redone.
//     Running sequences are never held back by it, and with none running it admits anyone.
// Prefix caching (when the allocator does it): a sequence admitted from the queue (new, or back
// after a preemption) first takes the longest run of cached blocks matching its tokens and
// starts its prefill after them; the last token is always computed, for its logits. Its
// remaining prefill is what the ordering above counts. Blocks become cached as they fill
// (Commit). The tokens looked up and found count as prefix-cache queries and hits.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "worker/engine/block_allocator.h"
#include "worker/engine/sequence.h"

namespace r1::engine {

struct SchedulerConfig {
  int32_t max_running = 64;   // sequences in one batch
  int32_t token_budget = 512; // tokens fed per step (decodes and prefill chunks together)
  int32_t block_size = 16;
  int32_t max_wait_steps = 256;  // steps after its arrival from which a sequence goes first
  int32_t admit_headroom_tokens = 0;  // tokens kept free per running sequence at admission
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t num_new = 0;  // tokens fed this step, starting at seq->num_cached
  bool sample = false;  // the chunk reaches the sequence's last token: sample the next one
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;  // sequences preempted while planning this step
  int32_t num_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, BlockAllocator* allocator);

  // Queues a new sequence (at the back).
  void Add(Sequence* seq);
  // Forgets a sequence (finished or cancelled) and frees its blocks.
  void Remove(Sequence* seq);
  // Plans the next step; allocates the blocks the planned tokens need.
  StepPlan Schedule();
  // After the step ran: the planned tokens are now cached; blocks they filled are registered
  // for later sequences to find.
  void Commit(const StepPlan& plan);

  bool empty() const { return running_.empty() && waiting_.empty(); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  const std::vector<Sequence*>& running() const { return running_; }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const SchedulerConfig& config() const { return config_; }
  // Prompt (and resumed or recomputed output) tokens looked up in the prefix cache at
  // admission, and those found: vLLM's prefix_cache_queries and prefix_cache_hits.
  int64_t prefix_cache_queries() const { return prefix_queries_; }
  int64_t prefix_cache_hits() const { return prefix_hits_; }

 private:
  // Allocates blocks so that seq can hold num_tokens tokens.
  bool EnsureBlocks(Sequence* seq, int32_t num_tokens);
  // Takes the newest running sequence out of the batch and queues it first.
  Sequence* PreemptNewest(StepPlan* plan);
  StepPlan TrySchedule(bool allow_admit);
  // Blocks seq still needs to hold its whole prompt (or recompute) and `headroom` more tokens.
  int32_t HeadroomBlocks(const Sequence* seq) const;
  // Cached blocks a sequence may take: whole blocks before its last token.
  int32_t MaxCachedBlocks(const Sequence* seq) const;
  // The prefill a sequence still has: for a queued one, less what the cache holds.
  int32_t RemainingPrefill(Sequence* seq);
  // Admission of a queued sequence: takes its cached prefix (num_cached moves past it).
  void TakeCachedPrefix(Sequence* seq);
  // Gives the cached prefix back (admission failed: nothing could be scheduled for it).
  void ReturnCachedPrefix(Sequence* seq);

  SchedulerConfig config_;
  BlockAllocator* allocator_;
  int64_t step_ = 0;  // Schedule() calls so far
  std::vector<Sequence*> running_;  // oldest first
  std::deque<Sequence*> waiting_;
  int64_t prefix_queries_ = 0;
  int64_t prefix_hits_ = 0;
};

}  // namespace r1::engine
