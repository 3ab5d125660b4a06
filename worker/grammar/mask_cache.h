// The masks a compiled grammar has computed, shared by every matcher of that grammar on any
// thread, in one LRU bounded in bytes:
//   - context-free masks of the short tokens, one per mask class of a state (mask_classes.h):
//     the tokens read in a fresh frame plus the exit nodes;
//   - the same for the few long tokens, by their own (finer) mask class;
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
  struct Counts {
    uint64_t hits = 0, misses = 0, miss_ns = 0;
  };
  Counts context_free, long_tokens, stack;
  uint64_t cached_bytes = 0, evictions = 0;
};

enum class MaskKind { kContextFree, kLongTokens, kStack };

class MaskCache {
 public:
  explicit MaskCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // kind kContextFree or kLongTokens; id: a mask class. nullptr when not cached.
  std::shared_ptr<const ContextFreeMask> ContextFree(MaskKind kind, int32_t id);
  // Stores (unless another thread was first) and returns the stored mask.
  std::shared_ptr<const ContextFreeMask> PutContextFree(MaskKind kind, int32_t id, ContextFreeMask m);
  std::shared_ptr<const TokenSet> StackMask(const std::string& key);
  void PutStackMask(const std::string& key, TokenSet tokens);

  void Count(MaskKind kind, bool hit, uint64_t miss_ns);
  MaskStats stats() const;

 private:
  struct Entry {
    std::shared_ptr<const ContextFreeMask> context_free;  // one of the two is set
    std::shared_ptr<const TokenSet> stack;
    size_t bytes = 0;
    std::list<std::string>::iterator pos;
  };
  static std::string ContextFreeKey(MaskKind kind, int32_t id);
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
  struct AtomicCounts {
    std::atomic<uint64_t> hits{0}, misses{0}, miss_ns{0};
  };
  AtomicCounts counts_[3];  // by MaskKind
  std::atomic<uint64_t> cached_bytes_{0}, evictions_{0};
};

}  // namespace r1::grammar
