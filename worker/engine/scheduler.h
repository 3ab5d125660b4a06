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
  // After the step ran: the planned tokens are now cached.
  static void Commit(const StepPlan& plan);

  bool empty() const { return running_.empty() && waiting_.empty(); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  const std::vector<Sequence*>& running() const { return running_; }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  // Allocates blocks so that seq can hold num_tokens tokens.
  bool EnsureBlocks(Sequence* seq, int32_t num_tokens);
  // Takes the newest running sequence out of the batch and queues it first.
  Sequence* PreemptNewest(StepPlan* plan);
  StepPlan TrySchedule(bool allow_admit);

  SchedulerConfig config_;
  BlockAllocator* allocator_;
  int64_t step_ = 0;  // Schedule() calls so far
  std::vector<Sequence*> running_;  // oldest first
  std::deque<Sequence*> waiting_;
};

}  // namespace r1::engine
