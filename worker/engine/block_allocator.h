// Fixed-size KV-cache blocks, with automatic prefix caching (vLLM's, nano-vllm's block manager).
// Torch-free; owned by the engine thread (no locking).
//
// Every block has a reference count: the sequences whose block tables hold it. With prefix
// caching on, a full block whose K/V has been computed is registered under a hash chained over
// its tokens and the previous block's hash, so it stands for the whole prefix up to it. When
// its last reference goes it is not forgotten but kept in an LRU of cached free blocks; a later
// sequence with the same prefix takes it again (and its prefill skips those tokens). Blocks are
// reclaimed for new content from the plain free list first, then from the LRU's cold end.
//
// A match is exact, not only a hash match: each cached block keeps its tokens and the identity
// (block and generation) of the block before it, and both must agree.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace r1::engine {

class BlockAllocator {
 public:
  // Without prefix caching.
  explicit BlockAllocator(int32_t num_blocks);
  BlockAllocator(int32_t num_blocks, int32_t block_size, bool prefix_caching);

  int32_t num_total() const { return num_total_; }
  // Blocks no sequence holds: never used, or cached and reclaimable.
  int32_t num_free() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t num_used() const { return num_total_ - num_free(); }
  // Cached blocks no sequence holds (part of num_free).
  int32_t num_cached_free() const { return static_cast<int32_t>(lru_.size()); }
  bool prefix_caching() const { return prefix_caching_; }
  int32_t block_size() const { return block_size_; }

  // Appends n blocks to *blocks, reclaiming cached ones as needed; allocates nothing and
  // returns false when fewer are free.
  bool Allocate(int32_t n, std::vector<int32_t>* blocks);
  // Drops a reference to every block in *blocks and clears it. Blocks nobody holds any more go
  // back: cached ones to the LRU (the last block first, so a prefix's tail is reclaimed before
  // its head), the others to the free list.
  void Free(std::vector<int32_t>* blocks);

  // Prefix caching (all no-ops returning 0 when it is off). `hashes` memoizes the chained
  // hashes of `tokens`' full blocks (a sequence keeps it; tokens are only ever appended).
  //
  // How many leading full blocks of `tokens`, at most max_blocks, are cached.
  int32_t CountCached(const std::vector<int32_t>& tokens, int32_t max_blocks,
                      std::vector<uint64_t>* hashes) const;
  // The same, taking a reference on each and appending them to *blocks (which must be empty).
  int32_t AcquireCached(const std::vector<int32_t>& tokens, int32_t max_blocks,
                        std::vector<uint64_t>* hashes, std::vector<int32_t>* blocks);
  // Blocks [first, end) of a sequence are full and their K/V computed: they become findable.
  // A block whose content another block already holds stays private.
  void Register(const std::vector<int32_t>& tokens, const std::vector<int32_t>& blocks,
                int32_t first, int32_t end, std::vector<uint64_t>* hashes);

 private:
  struct Cached {
    uint64_t hash = 0;
    bool registered = false;
    uint64_t generation = 0;  // bumped at each registration of this block
    int32_t parent = -1;      // the block before it in its prefix, and that block's generation
    uint64_t parent_generation = 0;
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;  // valid while in the LRU
  };
  // Extends *hashes to cover n full blocks of `tokens`.
  void HashBlocks(const std::vector<int32_t>& tokens, int32_t n,
                  std::vector<uint64_t>* hashes) const;
  // The cached block holding block i of `tokens` after `parent` (-1 for i = 0), or -1.
  int32_t Find(const std::vector<int32_t>& tokens, int32_t i, uint64_t hash,
               int32_t parent) const;
  int32_t Take();
  void Forget(int32_t block);

  int32_t num_total_;
  int32_t block_size_ = 0;
  bool prefix_caching_ = false;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<int32_t> refs_;
  std::vector<Cached> cached_;
  std::list<int32_t> lru_;  // cached blocks nobody holds, coldest first
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

// Blocks needed to hold n tokens.
inline int32_t BlocksFor(int64_t num_tokens, int32_t block_size) {
  return static_cast<int32_t>((num_tokens + block_size - 1) / block_size);
}

// The hash of a full block: chained over the previous block's hash and this block's tokens.
uint64_t HashBlock(uint64_t parent, const int32_t* tokens, int32_t n);

}  // namespace r1::engine
