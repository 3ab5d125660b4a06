// Top-p sampling on the GPU without sorting the vocabulary (sampling.cu). Plain pointers and a
// stream, no torch types, as kernels.h; worker/engine/device_sampler.cc calls it.
//
// The semantics are the device sampler's for a row with top-p and no top-k (device_sampler.h):
//   s = logit * inv_t (a non-finite logit: s = -inf), ordered by s descending, ties by id;
//   weight p = exp(s - max s), 0 where p < min_p;
//   keep the shortest prefix of that order whose weight reaches top_p of the total (all of it
//   when top_p >= 1), and pick the first kept token whose cumulative weight exceeds u times the
//   kept total.
// Weights are summed as integers, p in units of 2^-40 (a weight below 2^-40 of the top token's,
// about 1e-12, counts as 0): every sum is exact, so the pick does not depend on the order of
// additions and a row gives the same token on every run. The device sampler's float32 path (on
// CPU tensors) sums in float32; the two agree except where its rounding moves a boundary past
// the draw.
//
// How: one 1024-thread block per row. One pass finds the row's largest and smallest s, the next
// sums the weights; then each of the two cuts (the top-p cut, then the draw) is found by
// splitting the range of s left into 4 parts and keeping the part that holds the cut: a pass
// over the row (from L2) per split while more than 11,264 tokens remain, then in shared memory
// until one key is left. Ties at the last cut are taken in id order in one more pass. A row
// takes one SM; worker/engine/device_sampler.cc sorts instead when there are fewer than 4 rows.
#pragma once

#include <cstdint>

typedef struct CUstream_st* cudaStream_t;

namespace r1::model::cuda {

struct TopPSampleArgs {
  const float* logits = nullptr;  // [*, ld] float32
  int64_t ld = 0;                 // row stride in elements (>= V)
  const int64_t* rows = nullptr;  // [n] rows of logits to sample; nullptr: rows 0 .. n-1
  int64_t n = 0;
  int64_t V = 0;                 // vocabulary size, < 2^31
  const float* inv_t = nullptr;  // [n] 1 / temperature
  const float* top_p = nullptr;  // [n] in (0, 1]; >= 1 keeps every token with weight
  const float* min_p = nullptr;  // [n] >= 0
  const float* u = nullptr;      // [n] uniform draws in [0, 1)
  int64_t* out = nullptr;        // [n] the sampled token ids
};

// Returns the launch's cudaError_t (0 when it went in).
int TopPSample(const TopPSampleArgs& a, cudaStream_t stream);

}  // namespace r1::model::cuda
