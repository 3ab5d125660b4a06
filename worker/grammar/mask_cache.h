// The masks a compiled grammar has computed, shared by every matcher of that grammar on any
// thread. Two levels:
//   - context-free masks, one per mask class of a state (mask_classes.h): the tokens read in a
//     fresh frame plus the exit nodes; as many as the grammar has classes, kept for its life;
//   - whole masks for states with a stack below the top (recursion), keyed by the stack, in an
//     LRU of bounded size (inside a string at a given depth the key repeats at every token).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "worker/grammar/token_set.h"

namespace r1::grammar {

struct ContextFreeMask {
  TokenSet tokens;
  std::vector<uint32_t> exits;  // trie nodes where the frame may end with token bytes left
};

// Counters since the grammar was compiled.
struct MaskStats {
  uint64_t context_free_hits = 0, context_free_misses = 0, context_free_miss_ns = 0;
  uint64_t stack_hits = 0, stack_misses = 0, stack_miss_ns = 0;
  uint64_t cached_bytes = 0;
};

class MaskCache {
 public:
  MaskCache(size_t num_classes, size_t max_stack_masks);

  // nullptr when not computed yet.
  std::shared_ptr<const ContextFreeMask> ContextFree(int32_t cls);
  // Stores (unless another thread was first) and returns the stored mask.
  std::shared_ptr<const ContextFreeMask> PutContextFree(int32_t cls, ContextFreeMask m);

  std::shared_ptr<const std::vector<uint32_t>> StackMask(const std::string& key);
  void PutStackMask(const std::string& key, std::shared_ptr<const std::vector<uint32_t>> bits);

  void Count(bool context_free, bool hit, uint64_t miss_ns);
  MaskStats stats() const;

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<const ContextFreeMask>> context_free_;
  size_t max_stack_masks_;
  std::list<std::string> lru_;  // most recent first
  struct Entry {
    std::shared_ptr<const std::vector<uint32_t>> bits;
    std::list<std::string>::iterator pos;
  };
  std::unordered_map<std::string, Entry> stack_masks_;
  std::atomic<uint64_t> cf_hits_{0}, cf_misses_{0}, cf_miss_ns_{0};
  std::atomic<uint64_t> st_hits_{0}, st_misses_{0}, st_miss_ns_{0};
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace r1::grammar
