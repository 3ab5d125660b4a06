#include "worker/engine/block_allocator.h"

#include <algorithm>

namespace r1::engine {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t HashBlock(uint64_t parent, const int32_t* tokens, int32_t n) {
  uint64_t h = Mix(parent ^ 0x5bd1e9955bd1e995ULL);
  for (int32_t i = 0; i < n; ++i) h = Mix(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

BlockAllocator::BlockAllocator(int32_t num_blocks) : BlockAllocator(num_blocks, 0, false) {}

BlockAllocator::BlockAllocator(int32_t num_blocks, int32_t block_size, bool prefix_caching)
    : num_total_(num_blocks),
      block_size_(block_size),
      prefix_caching_(prefix_caching && block_size > 0),
      refs_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
  if (prefix_caching_) cached_.resize(num_blocks);
}

int32_t BlockAllocator::Take() {
  if (!free_.empty()) {
    const int32_t b = free_.back();
    free_.pop_back();
    return b;
  }
  const int32_t b = lru_.front();  // the coldest cached block gets new content
  lru_.pop_front();
  Forget(b);
  return b;
}

void BlockAllocator::Forget(int32_t block) {
  Cached& c = cached_[block];
  if (!c.registered) return;
  by_hash_.erase(c.hash);
  c.registered = false;
  c.tokens.clear();
}

bool BlockAllocator::Allocate(int32_t n, std::vector<int32_t>* blocks) {
  if (n <= 0) return true;
  if (n > num_free()) return false;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = Take();
    refs_[b] = 1;
    blocks->push_back(b);
  }
  return true;
}

void BlockAllocator::Free(std::vector<int32_t>* blocks) {
  for (auto it = blocks->rbegin(); it != blocks->rend(); ++it) {
    const int32_t b = *it;
    if (--refs_[b] > 0) continue;
    if (prefix_caching_ && cached_[b].registered) {
      lru_.push_back(b);
      cached_[b].lru = std::prev(lru_.end());
    } else {
      free_.push_back(b);
    }
  }
  blocks->clear();
}

void BlockAllocator::HashBlocks(const std::vector<int32_t>& tokens, int32_t n,
                                std::vector<uint64_t>* hashes) const {
  for (int32_t i = static_cast<int32_t>(hashes->size()); i < n; ++i)
    hashes->push_back(
        HashBlock(i == 0 ? 0 : (*hashes)[i - 1], tokens.data() + i * block_size_, block_size_));
}

int32_t BlockAllocator::Find(const std::vector<int32_t>& tokens, int32_t i, uint64_t hash,
                             int32_t parent) const {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Cached& c = cached_[it->second];
  const bool same_parent =
      parent < 0 ? c.parent < 0
                 : c.parent == parent && c.parent_generation == cached_[parent].generation;
  if (!same_parent) return -1;
  if (!std::equal(c.tokens.begin(), c.tokens.end(), tokens.begin() + i * block_size_))
    return -1;
  return it->second;
}

int32_t BlockAllocator::CountCached(const std::vector<int32_t>& tokens, int32_t max_blocks,
                                    std::vector<uint64_t>* hashes) const {
  if (!prefix_caching_) return 0;
  max_blocks = std::min<int32_t>(max_blocks, static_cast<int32_t>(tokens.size()) / block_size_);
  HashBlocks(tokens, max_blocks, hashes);
  int32_t parent = -1, n = 0;
  while (n < max_blocks && (parent = Find(tokens, n, (*hashes)[n], parent)) >= 0) ++n;
  return n;
}

int32_t BlockAllocator::AcquireCached(const std::vector<int32_t>& tokens, int32_t max_blocks,
                                      std::vector<uint64_t>* hashes,
                                      std::vector<int32_t>* blocks) {
  const int32_t n = CountCached(tokens, max_blocks, hashes);
  int32_t parent = -1;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = Find(tokens, i, (*hashes)[i], parent);
    if (refs_[b]++ == 0) lru_.erase(cached_[b].lru);
    blocks->push_back(b);
    parent = b;
  }
  return n;
}

void BlockAllocator::Register(const std::vector<int32_t>& tokens,
                              const std::vector<int32_t>& blocks, int32_t first, int32_t end,
                              std::vector<uint64_t>* hashes) {
  if (!prefix_caching_) return;
  HashBlocks(tokens, end, hashes);
  for (int32_t i = first; i < end; ++i) {
    // A block's parent is the block that holds the previous block's content in the cache:
    // this sequence's own, or another sequence's when both computed the same prefix at once.
    int32_t parent = -1;
    if (i > 0) {
      auto it = by_hash_.find((*hashes)[i - 1]);
      if (it == by_hash_.end()) return;  // the prefix is gone: nothing after it can be found
      parent = it->second;
    }
    const int32_t b = blocks[i];
    Cached& c = cached_[b];
    if (c.registered || by_hash_.count((*hashes)[i])) continue;
    c.registered = true;
    c.hash = (*hashes)[i];
    ++c.generation;
    c.parent = parent;
    c.parent_generation = parent < 0 ? 0 : cached_[parent].generation;
    c.tokens.assign(tokens.begin() + i * block_size_, tokens.begin() + (i + 1) * block_size_);
    by_hash_.emplace(c.hash, b);
  }
}

}  // namespace r1::engine
