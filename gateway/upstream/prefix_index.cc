#include "gateway/upstream/prefix_index.h"

namespace r1::gw {
namespace {

// FNV-1a over the chunk, then a 64-bit finalizer (splitmix64) over the chain: stable across
// runs, so that routing decisions in tests and benchmarks repeat.
uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

RouteKey MakeRouteKey(std::string_view prompt) {
  RouteKey key;
  key.bytes = prompt.size();
  key.chunks.reserve(prompt.size() / kRouteChunkBytes);
  uint64_t h = 0;
  for (size_t at = 0; at + kRouteChunkBytes <= prompt.size(); at += kRouteChunkBytes) {
    h = Mix(h ^ Fnv1a(prompt.substr(at, kRouteChunkBytes)));
    key.chunks.push_back(h);
  }
  return key;
}

void PrefixIndex::SetCapacity(size_t chunks) {
  std::lock_guard<std::mutex> lock(mu_);
  capacity_ = chunks;
  EvictLocked();
}

size_t PrefixIndex::capacity() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capacity_;
}

size_t PrefixIndex::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return where_.size();
}

size_t PrefixIndex::Match(const RouteKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  while (n < key.chunks.size() && where_.count(key.chunks[n])) ++n;
  return n;
}

// Back to front, so that a prompt's first chunks end up the most recently used: eviction then
// takes a prefix's tail first and the rest still matches (the worker frees a sequence's blocks
// in the same order).
void PrefixIndex::Insert(const RouteKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = key.chunks.size(); i-- > 0;) {
    const uint64_t h = key.chunks[i];
    auto it = where_.find(h);
    if (it != where_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
    } else {
      lru_.push_front(h);
      where_.emplace(h, lru_.begin());
    }
  }
  EvictLocked();
}

void PrefixIndex::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.clear();
  where_.clear();
}

void PrefixIndex::EvictLocked() {
  while (where_.size() > capacity_) {
    where_.erase(lru_.back());
    lru_.pop_back();
  }
}

}  // namespace r1::gw
