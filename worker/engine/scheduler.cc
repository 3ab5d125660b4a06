#include "worker/engine/scheduler.h"

#include <algorithm>
#include <unordered_map>

namespace r1::engine {

Scheduler::Scheduler(SchedulerConfig config, BlockAllocator* allocator)
    : config_(config), allocator_(allocator) {}

void Scheduler::Add(Sequence* seq) {
  seq->queued_step = step_;
  waiting_.push_back(seq);
}

void Scheduler::Remove(Sequence* seq) {
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  auto w = std::find(waiting_.begin(), waiting_.end(), seq);
  if (w != waiting_.end()) waiting_.erase(w);
  allocator_->Free(&seq->blocks);
}

bool Scheduler::EnsureBlocks(Sequence* seq, int32_t num_tokens) {
  int32_t need = BlocksFor(num_tokens, config_.block_size) - static_cast<int32_t>(seq->blocks.size());
  return allocator_->Allocate(need, &seq->blocks);
}

int32_t Scheduler::HeadroomBlocks(const Sequence* seq) const {
  const int32_t want = BlocksFor(seq->num_tokens() + config_.admit_headroom_tokens, config_.block_size);
  return std::max(0, want - static_cast<int32_t>(seq->blocks.size()));
}

int32_t Scheduler::MaxCachedBlocks(const Sequence* seq) const {
  if (seq->skip_cached_prefix) return 0;
  return (seq->num_tokens() - 1) / config_.block_size;
}

int32_t Scheduler::RemainingPrefill(Sequence* seq) {
  if (!seq->blocks.empty()) return seq->num_uncached();
  return seq->num_uncached() -
         allocator_->CountCached(seq->tokens, MaxCachedBlocks(seq), &seq->block_hashes) *
             config_.block_size;
}

void Scheduler::TakeCachedPrefix(Sequence* seq) {
  if (!seq->blocks.empty()) return;
  const int32_t hit = allocator_->AcquireCached(seq->tokens, MaxCachedBlocks(seq),
                                                &seq->block_hashes, &seq->blocks);
  seq->num_cached = hit * config_.block_size;
  seq->num_registered = hit;
}

void Scheduler::ReturnCachedPrefix(Sequence* seq) {
  allocator_->Free(&seq->blocks);
  seq->num_cached = 0;
  seq->num_registered = 0;
}

Sequence* Scheduler::PreemptNewest(StepPlan* plan) {
  Sequence* victim = running_.back();
  running_.pop_back();
  allocator_->Free(&victim->blocks);
  victim->num_cached = 0;
  victim->num_registered = 0;
  victim->num_preemptions++;
  waiting_.push_front(victim);
  plan->preempted.push_back(victim);
  return victim;
}

StepPlan Scheduler::Schedule() {
  ++step_;
  StepPlan plan = TrySchedule(/*allow_admit=*/true);
  // Nothing could run (every running sequence is part-way through a prefill and the cache is
  // full): preempt the newest and try again. A lone sequence always fits (max_model_len is
  // capped at the cache size), so this ends.
  std::vector<Sequence*> preempted;
  while (plan.chunks.empty() && !running_.empty()) {
    PreemptNewest(&plan);
    preempted.insert(preempted.end(), plan.preempted.begin(), plan.preempted.end());
    plan = TrySchedule(/*allow_admit=*/false);
  }
  plan.preempted.insert(plan.preempted.begin(), preempted.begin(), preempted.end());
  return plan;
}

StepPlan Scheduler::TrySchedule(bool allow_admit) {
  StepPlan plan;
  int32_t budget = config_.token_budget;

  // 1. Decodes.
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence* seq = running_[i];
    if (seq->num_uncached() != 1) continue;
    bool preempted_self = false;
    while (!EnsureBlocks(seq, seq->num_tokens())) {
      if (PreemptNewest(&plan) == seq) {
        preempted_self = true;
        break;
      }
    }
    if (preempted_self) break;  // seq was the newest: nothing after it is left
    plan.chunks.push_back({seq, 1, true});
    budget -= 1;
  }

  // 2. Prefill chunks: part-way prefills and newly admitted sequences.
  std::vector<Sequence*> candidates;
  for (Sequence* seq : running_) {
    if (seq->num_uncached() > 1) candidates.push_back(seq);
  }
  size_t room = running_.size() < static_cast<size_t>(config_.max_running)
                    ? config_.max_running - running_.size()
                    : 0;
  for (size_t i = 0; i < waiting_.size() && i < room; ++i) candidates.push_back(waiting_[i]);
  // Sequences queued max_wait_steps ago or more first, in arrival order; then the shortest
  // remaining prefill.
  auto overdue = [&](const Sequence* s) { return step_ - s->queued_step >= config_.max_wait_steps; };
  std::unordered_map<const Sequence*, int32_t> remaining;
  for (Sequence* seq : candidates) remaining[seq] = RemainingPrefill(seq);
  std::stable_sort(candidates.begin(), candidates.end(), [&](const Sequence* a, const Sequence* b) {
    const bool oa = overdue(a), ob = overdue(b);
    if (oa != ob) return oa;
    if (oa) return a->queued_step < b->queued_step;
    return remaining[a] < remaining[b];
  });

  // A step that had to preempt admits no one: the cache is full.
  bool admitting = allow_admit && plan.preempted.empty();
  // The blocks admission leaves free (admit_headroom_tokens; see scheduler.h).
  int64_t reserve = 0;
  if (config_.admit_headroom_tokens > 0) {
    for (const Sequence* seq : running_) reserve += HeadroomBlocks(seq);
  }
  for (Sequence* seq : candidates) {
    if (budget <= 0) break;
    bool queued = std::find(running_.begin(), running_.end(), seq) == running_.end();
    if (queued && !admitting) continue;
    if (queued) TakeCachedPrefix(seq);
    int32_t n = std::min(seq->num_uncached(), budget);
    // Shrink the chunk to what the free blocks can hold.
    int32_t capacity =
        (static_cast<int32_t>(seq->blocks.size()) + allocator_->num_free()) * config_.block_size -
        seq->num_cached;
    n = std::min(n, capacity);
    if (queued && config_.admit_headroom_tokens > 0 && n > 0) {
      const int32_t chunk_blocks =
          BlocksFor(seq->num_cached + n, config_.block_size) - static_cast<int32_t>(seq->blocks.size());
      if (allocator_->num_free() - chunk_blocks < reserve) n = 0;  // would crowd the running ones
    }
    if (n <= 0) {
      if (queued) {
        ReturnCachedPrefix(seq);
        admitting = false;  // keep admission in order: no one jumps a stuck head
      }
      continue;
    }
    EnsureBlocks(seq, seq->num_cached + n);
    if (queued) {
      if (allocator_->prefix_caching()) {
        prefix_queries_ += seq->num_tokens();
        prefix_hits_ += seq->num_cached;
      }
      waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
      running_.push_back(seq);
    }
    if (queued && config_.admit_headroom_tokens > 0) reserve += HeadroomBlocks(seq);  // its own rest
    seq->started = true;
    plan.chunks.push_back({seq, n, seq->num_cached + n == seq->num_tokens()});
    budget -= n;
  }
  for (const ScheduledChunk& c : plan.chunks) plan.num_tokens += c.num_new;
  return plan;
}

void Scheduler::Commit(const StepPlan& plan) {
  for (const ScheduledChunk& c : plan.chunks) {
    Sequence* seq = c.seq;
    seq->num_cached += c.num_new;
    const int32_t full = seq->num_cached / config_.block_size;
    if (full > seq->num_registered) {
      allocator_->Register(seq->tokens, seq->blocks, seq->num_registered, full,
                           &seq->block_hashes);
      seq->num_registered = full;
    }
  }
}

}  // namespace r1::engine
