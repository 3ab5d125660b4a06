// One sequence's scheduling state: its tokens, how many of them have K/V in the cache, and the
// blocks that hold them. Torch-free. The engine derives its request type from this.
#pragma once

#include <cstdint>
#include <vector>

namespace r1::engine {

struct Sequence {
  uint64_t id = 0;
  // Prompt followed by the generated tokens.
  std::vector<int32_t> tokens;
  int32_t num_prompt = 0;
  // Tokens whose K/V is in the cache; after a preemption this drops back to 0 and the whole
  // sequence (prompt and output so far) is prefilled again (recompute).
  int32_t num_cached = 0;
  std::vector<int32_t> blocks;
  // Times this sequence was preempted.
  int32_t num_preemptions = 0;
  // True once the scheduler first ran it (it has left the admission queue).
  bool started = false;
  // The scheduler step at which it was first queued (for aging; kept across preemptions).
  int64_t queued_step = 0;
  // Prefix caching: the chained hashes of the full blocks of `tokens` computed so far (a
  // memo; tokens are only appended), and how many leading blocks of `blocks` are registered
  // in the cache (or were taken from it).
  std::vector<uint64_t> block_hashes;
  int32_t num_registered = 0;
  // Never take blocks from the prefix cache (its blocks still go into it): set for a request
  // that asks for prompt log-probabilities, which need the logits of every prompt row, and a
  // cached prefix is never run through the model.
  bool skip_cached_prefix = false;

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_uncached() const { return num_tokens() - num_cached; }
  int32_t num_output() const { return num_tokens() - num_prompt; }
};

}  // namespace r1::engine
