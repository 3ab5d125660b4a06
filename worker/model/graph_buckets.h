// Which decode steps replay a captured CUDA graph: the bucket policy, in one place (the CUDA
// path's graph cache captures by it; warm-up walks it). Torch-free.
//
// A decode step (every sequence feeds one token) of b sequences whose longest context is n
// keys replays the graph of bucket (B, C): B the next power of two >= b, up to kMaxBatch (the
// padding rows repeat row 0), and C the next power of two >= max(n, kMinContext), up to
// kMaxContext (the block tables are C keys wide). Larger steps run eagerly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace r1::model {

struct GraphBucket {
  int64_t batch = 0;
  int64_t context = 0;
  bool operator<(const GraphBucket& o) const {
    return batch != o.batch ? batch < o.batch : context < o.context;
  }
  bool operator==(const GraphBucket& o) const { return batch == o.batch && context == o.context; }
};

struct GraphBuckets {
  static constexpr int64_t kMaxBatch = 256;
  static constexpr int64_t kMinContext = 64;
  static constexpr int64_t kMaxContext = 131072;

  // The bucket a decode step of `batch` sequences, the longest `max_len` keys, replays.
  static std::optional<GraphBucket> For(int64_t batch, int64_t max_len) {
    if (batch < 1 || batch > kMaxBatch || max_len > kMaxContext) return std::nullopt;
    GraphBucket b{1, kMinContext};
    while (b.batch < batch) b.batch *= 2;
    while (b.context < max_len) b.context *= 2;
    return b;
  }

  // Every bucket with batch <= the bucket of max_batch and context <= the bucket of
  // max_context, smallest first: what warm-up captures.
  static std::vector<GraphBucket> UpTo(int64_t max_batch, int64_t max_context) {
    std::vector<GraphBucket> out;
    std::optional<GraphBucket> top = For(std::min(max_batch, kMaxBatch), std::min(max_context, kMaxContext));
    if (!top) return out;
    for (int64_t b = 1; b <= top->batch; b *= 2)
      for (int64_t c = kMinContext; c <= top->context; c *= 2) out.push_back({b, c});
    return out;
  }
};

}  // namespace r1::model
