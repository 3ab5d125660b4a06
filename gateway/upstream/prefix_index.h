// What the gateway believes each worker has in its prefix cache, for prefix-aware routing.
//
// The gateway does not tokenize, so it works on the prompt's bytes (a canonical form of the chat
// messages or the completion prompt): the prompt is cut into kRouteChunkBytes-byte chunks, and
// chunk i is known by a hash chained over chunks 0..i (as the worker's KV blocks are keyed by a
// hash chained over their tokens). A chunk hash therefore stands for the whole prefix up to it,
// and the set of hashes a worker was sent is an approximate radix tree of its prompts (SGLang's
// cache-aware router keeps a real one). The longest run of leading hashes present predicts the
// prefix the worker still holds.
//
// Each worker's set is an LRU bounded by the tokens its KV cache holds (from its load report),
// at kRouteBytesPerToken bytes a token: older prefixes fall out as they would from the cache.
// The guess can be wrong (the worker evicts by its own use, other gateways send it work); a
// wrong guess costs a prefill, never a wrong answer.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace r1::gw {

inline constexpr size_t kRouteChunkBytes = 64;
// Bytes of prompt per token, roughly, for BPE vocabularies on English text and code.
inline constexpr size_t kRouteBytesPerToken = 4;

// A prompt as routing sees it: the chained hashes of its whole chunks.
struct RouteKey {
  std::vector<uint64_t> chunks;
  size_t bytes = 0;  // the prompt's length
};

RouteKey MakeRouteKey(std::string_view prompt);

class PrefixIndex {
 public:
  // Chunks kept before the least recently used fall out.
  void SetCapacity(size_t chunks);
  size_t capacity() const;
  size_t size() const;
  // How many of `key`'s leading chunks are present.
  size_t Match(const RouteKey& key) const;
  // Records that the worker was sent `key` (it will cache that prefix, or use it again).
  void Insert(const RouteKey& key);
  // The worker lost its cache (it failed, or restarted).
  void Clear();

 private:
  void EvictLocked();

  mutable std::mutex mu_;
  size_t capacity_ = 0;
  std::list<uint64_t> lru_;  // most recently used first
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

}  // namespace r1::gw
