#include "worker/grammar/mask_cache.h"

namespace r1::grammar {

std::string MaskCache::ContextFreeKey(int32_t cls) {
  std::string key = "c";
  key.append(reinterpret_cast<const char*>(&cls), sizeof cls);
  return key;
}

MaskCache::Entry* MaskCache::Find(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.pos);
  return &it->second;
}

MaskCache::Entry* MaskCache::Insert(const std::string& key, Entry e) {
  if (Entry* old = Find(key)) return old;
  lru_.push_front(key);
  e.pos = lru_.begin();
  bytes_ += e.bytes;
  Entry* stored = &entries_.emplace(key, std::move(e)).first->second;
  while (bytes_ > max_bytes_ && lru_.size() > 1) {
    auto victim = entries_.find(lru_.back());
    bytes_ -= victim->second.bytes;
    entries_.erase(victim);
    lru_.pop_back();
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  cached_bytes_.store(bytes_, std::memory_order_relaxed);
  return stored;
}

std::shared_ptr<const ContextFreeMask> MaskCache::ContextFree(int32_t cls) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = Find(ContextFreeKey(cls));
  return e ? e->context_free : nullptr;
}

std::shared_ptr<const ContextFreeMask> MaskCache::PutContextFree(int32_t cls, ContextFreeMask m) {
  Entry e;
  e.bytes = m.tokens.memory_bytes() + m.exits.size() * sizeof(uint32_t) + 64;
  e.context_free = std::make_shared<const ContextFreeMask>(std::move(m));
  std::lock_guard<std::mutex> lock(mu_);
  return Insert(ContextFreeKey(cls), std::move(e))->context_free;
}

std::shared_ptr<const TokenSet> MaskCache::StackMask(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = Find("s" + key);
  return e ? e->stack : nullptr;
}

void MaskCache::PutStackMask(const std::string& key, TokenSet tokens) {
  Entry e;
  e.bytes = tokens.memory_bytes() + key.size() + 64;
  e.stack = std::make_shared<const TokenSet>(std::move(tokens));
  std::lock_guard<std::mutex> lock(mu_);
  Insert("s" + key, std::move(e));
}

void MaskCache::Count(bool context_free, bool hit, uint64_t miss_ns) {
  auto& hits = context_free ? cf_hits_ : st_hits_;
  auto& misses = context_free ? cf_misses_ : st_misses_;
  auto& ns = context_free ? cf_miss_ns_ : st_miss_ns_;
  if (hit) {
    hits.fetch_add(1, std::memory_order_relaxed);
  } else {
    misses.fetch_add(1, std::memory_order_relaxed);
    ns.fetch_add(miss_ns, std::memory_order_relaxed);
  }
}

MaskStats MaskCache::stats() const {
  MaskStats s;
  s.context_free_hits = cf_hits_.load();
  s.context_free_misses = cf_misses_.load();
  s.context_free_miss_ns = cf_miss_ns_.load();
  s.stack_hits = st_hits_.load();
  s.stack_misses = st_misses_.load();
  s.stack_miss_ns = st_miss_ns_.load();
  s.cached_bytes = cached_bytes_.load();
  s.evictions = evictions_.load();
  return s;
}

}  // namespace r1::grammar
