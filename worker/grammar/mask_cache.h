// The masks a compiled grammar has computed, shared by every matcher of that grammar on any
// thread, in one LRU bounded in bytes:
//   - context-free masks, one per mask class of a state (mask_classes.h): the tokens read in a
//     fresh frame plus the exit nodes;
//   - whole masks of states with a stack below the top (recursion), keyed by the stack (inside
//     a string at a given depth the key repeats at every token).
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
  uint64_t cached_bytes = 0, evictions = 0;
};

class MaskCache {
 public:
  explicit MaskCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // nullptr when not cached.
  std::shared_ptr<const ContextFreeMask> ContextFree(int32_t cls);
  // Stores (unless another thread was first) and returns the stored mask.
  std::shared_ptr<const ContextFreeMask> PutContextFree(int32_t cls, ContextFreeMask m);
  std::shared_ptr<const TokenSet> StackMask(const std::string& key);
  void PutStackMask(const std::string& key, TokenSet tokens);

  void Count(bool context_free, bool hit, uint64_t miss_ns);
  MaskStats stats() const;

 private:
  struct Entry {
    std::shared_ptr<const ContextFreeMask> context_free;  // one of the two is set
    std::shared_ptr<const TokenSet> stack;
    size_t bytes = 0;
    std::list<std::string>::iterator pos;
  };
  static std::string ContextFreeKey(int32_t cls);
  // Finds and marks as recently used; nullptr when absent. mu_ held.
  Entry* Find(const std::string& key);
  // Inserts unless present, then evicts the least recently used beyond max_bytes_ (the new
  // entry stays even when it alone is larger). mu_ held. Returns the entry under the key.
  Entry* Insert(const std::string& key, Entry e);

  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recent first
  size_t bytes_ = 0;
  const size_t max_bytes_;
  std::atomic<uint64_t> cf_hits_{0}, cf_misses_{0}, cf_miss_ns_{0};
  std::atomic<uint64_t> st_hits_{0}, st_misses_{0}, st_miss_ns_{0};
  std::atomic<uint64_t> cached_bytes_{0}, evictions_{0};
};

}  // namespace r1::grammar
