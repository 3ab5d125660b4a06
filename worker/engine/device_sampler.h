// Sampling on the logits' own device: the semantics of SampleBatch (sampler.h) written with
// ATen ops, so that on CUDA only the chosen token ids (and the log-probabilities asked for)
// cross to the host, not the [n, vocab] logits.
//
// Randomness stays on the host, per sequence: each sampled row draws one uniform from its
// SamplerState's own stream (the same single draw per step SampleBatch makes); the device turns
// it into a token by inverse CDF over the filtered distribution, taken in the order SampleBatch
// uses (by logit, ties by id, when top-k or top-p is on; by id otherwise). A seed therefore
// makes the output repeatable, a row's token never depends on the rest of the batch, and for
// the same state both samplers pick the same token except where float32 rounding on the device
// moves a cumulative boundary past the draw.
//
// Fast path: every row greedy, no penalties, no constraints, no log-probabilities: one argmax
// on the device. A row's LogitsConstraint applies after its penalties, as in SampleBatch.
//
// Rows with top-p and no top-k (the R1 defaults: temperature 0.6, top_p 0.95) sum their
// weights exactly, as integers in units of 2^-40 (worker/model/cuda/sampling.h), as SampleBatch
// does: on CUDA from 4 such rows a kernel finds the top-p cut and the draw's token without
// sorting; below that, and on other devices, the rows are sorted. Every path gives the same
// token for the same row and draw (up to the last bit of each device's expf). Same order, same
// draw, same cuts as the float32 path the other rows take.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "worker/engine/sampler.h"

namespace r1::engine {

// Whether top-p rows without top-k take the exact integer path above (default) or the float32
// sort used before it. For side-by-side benchmarks; process-wide.
void SetTopPKernel(bool enabled);

// Like SampleBatch: one token per row of `logits` ([n, vocab], float32, any device), appended
// to its state's `output`.
std::vector<SampleResult> SampleBatchOnDevice(const at::Tensor& logits,
                                              const std::vector<const SamplingOptions*>& options,
                                              const std::vector<SamplerState*>& states);

// The logits after each row's repetition, presence and frequency penalties (the row values
// SampleBatch samples from), on the logits' device. Returns `logits` itself when no row is
// penalised, otherwise a new tensor.
at::Tensor PenalisedLogits(const at::Tensor& logits,
                           const std::vector<const SamplingOptions*>& options,
                           const std::vector<const SamplerState*>& states);

// The logits after each row's constraint (the state's LogitsConstraint: biases added, then -inf
// outside the mask), on the logits' device. The masks go up as one bitmask per constrained row
// (19 KB for Qwen's vocabulary) and expand to booleans there. Returns `logits` itself when no
// row is constrained; otherwise writes into `logits` when in_place, else into a copy.
at::Tensor ConstrainedLogits(const at::Tensor& logits,
                             const std::vector<const SamplerState*>& states, bool in_place);

}  // namespace r1::engine
