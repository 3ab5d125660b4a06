#include "worker/grammar/mask_cache.h"

namespace r1::grammar {

std::string MaskCache::ContextFreeKey(MaskKind kind, int32_t id) {
  std::string key = kind == MaskKind::kContextFree ? "c" : "l";
  key.append(reinterpret_cast<const char*>(&id), sizeof id);
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

std::shared_ptr<const ContextFreeMask> MaskCache::ContextFree(MaskKind kind, int32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = Find(ContextFreeKey(kind, id));
  return e ? e->context_free : nullptr;
}

std::shared_ptr<const ContextFreeMask> MaskCache::PutContextFree(MaskKind kind, int32_t id,
                                                                ContextFreeMask m) {
  Entry e;
  e.bytes = m.tokens.memory_bytes() + m.exits.size() * sizeof(uint32_t) + 64;
  e.context_free = std::make_shared<const ContextFreeMask>(std::move(m));
  std::lock_guard<std::mutex> lock(mu_);
  return Insert(ContextFreeKey(kind, id), std::move(e))->context_free;
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

void MaskCache::Count(MaskKind kind, bool hit, uint64_t miss_ns) {
  AtomicCounts& c = counts_[static_cast<int>(kind)];
  if (hit) {
    c.hits.fetch_add(1, std::memory_order_relaxed);
  } else {
    c.misses.fetch_add(1, std::memory_order_relaxed);
    c.miss_ns.fetch_add(miss_ns, std::memory_order_relaxed);
  }
}

MaskStats MaskCache::stats() const {
  MaskStats s;
  MaskStats::Counts* out[3] = {&s.context_free, &s.long_tokens, &s.stack};
  for (int k = 0; k < 3; ++k) {
    out[k]->hits = counts_[k].hits.load();
    out[k]->misses = counts_[k].misses.load();
    out[k]->miss_ns = counts_[k].miss_ns.load();
  }
  s.cached_bytes = cached_bytes_.load();
  s.evictions = evictions_.load();
  return s;
}

}  // namespace r1::grammar
