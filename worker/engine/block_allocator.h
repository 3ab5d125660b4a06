// Fixed-size KV-cache blocks: a free list of block numbers. Torch-free; owned by the engine
// thread (no locking).
#pragma once

#include <cstdint>
#include <vector>

namespace r1::engine {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  int32_t num_total() const { return num_total_; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_total_ - num_free(); }

  // Appends n blocks to *blocks; allocates nothing and returns false when fewer are free.
  bool Allocate(int32_t n, std::vector<int32_t>* blocks);
  // Returns every block in *blocks to the free list and clears it.
  void Free(std::vector<int32_t>* blocks);

 private:
  int32_t num_total_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

// Blocks needed to hold n tokens.
inline int32_t BlocksFor(int64_t num_tokens, int32_t block_size) {
  return static_cast<int32_t>((num_tokens + block_size - 1) / block_size);
}

}  // namespace r1::engine
