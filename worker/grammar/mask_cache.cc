#include "worker/grammar/mask_cache.h"

namespace r1::grammar {

MaskCache::MaskCache(size_t num_classes, size_t max_stack_masks)
    : context_free_(num_classes), max_stack_masks_(max_stack_masks) {}

std::shared_ptr<const ContextFreeMask> MaskCache::ContextFree(int32_t cls) {
  std::lock_guard<std::mutex> lock(mu_);
  return context_free_[cls];
}

std::shared_ptr<const ContextFreeMask> MaskCache::PutContextFree(int32_t cls, ContextFreeMask m) {
  const uint64_t size = m.tokens.memory_bytes() + m.exits.size() * sizeof(uint32_t);
  auto p = std::make_shared<const ContextFreeMask>(std::move(m));
  std::lock_guard<std::mutex> lock(mu_);
  if (context_free_[cls]) return context_free_[cls];
  bytes_ += size;
  context_free_[cls] = p;
  return p;
}

std::shared_ptr<const std::vector<uint32_t>> MaskCache::StackMask(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stack_masks_.find(key);
  if (it == stack_masks_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.pos);
  return it->second.bits;
}

void MaskCache::PutStackMask(const std::string& key,
                             std::shared_ptr<const std::vector<uint32_t>> bits) {
  if (max_stack_masks_ == 0) return;
  const uint64_t size = bits->size() * sizeof(uint32_t);
  std::lock_guard<std::mutex> lock(mu_);
  if (stack_masks_.count(key)) return;
  lru_.push_front(key);
  stack_masks_.emplace(key, Entry{std::move(bits), lru_.begin()});
  bytes_ += size;
  while (stack_masks_.size() > max_stack_masks_) {
    auto old = stack_masks_.find(lru_.back());
    bytes_ -= old->second.bits->size() * sizeof(uint32_t);
    stack_masks_.erase(old);
    lru_.pop_back();
  }
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
  s.cached_bytes = bytes_.load();
  return s;
}

}  // namespace r1::grammar
