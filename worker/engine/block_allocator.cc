#include "worker/engine/block_allocator.h"

namespace r1::engine {

BlockAllocator::BlockAllocator(int32_t num_blocks) : num_total_(num_blocks) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

bool BlockAllocator::Allocate(int32_t n, std::vector<int32_t>* blocks) {
  if (n <= 0) return true;
  if (n > num_free()) return false;
  for (int32_t i = 0; i < n; ++i) {
    blocks->push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void BlockAllocator::Free(std::vector<int32_t>* blocks) {
  for (int32_t b : *blocks) free_.push_back(b);
  blocks->clear();
}

}  // namespace r1::engine
