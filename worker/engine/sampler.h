// Choosing the next token from a row of logits: greedy, temperature, top-k, top-p, min-p,
// repetition / presence / frequency penalties, log-probabilities, and a per-sequence random
// stream so that a seed makes sampling repeatable (whatever else is in the batch).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <vector>

#include "common/sampling.h"
#include "worker/engine/sample_types.h"

namespace r1::engine {

using r1::SamplingOptions;

// Uniform in [0, 1) from a sequence's own stream: 53 random bits, the same on every machine.
// Each sampled (non-greedy) row draws exactly one per step.
double UniformDraw(std::mt19937_64& rng);

// What a row's penalties touch: the repetition penalty (HF semantics) applies to `repeated`,
// the ids seen in the prompt or the output (unique, in range); presence and frequency (OpenAI
// semantics, output tokens) subtract `second` from the logit of `first`.
struct PenaltyTerms {
  std::vector<int32_t> repeated;
  std::vector<std::pair<int32_t, float>> subtract;
};
PenaltyTerms CollectPenalties(const SamplingOptions& o, const SamplerState& s, int64_t vocab);

// Applies a row's penalties to `row` (vocab floats) in place: repetition first, then presence
// and frequency.
void ApplyPenalties(float* row, int64_t vocab, const SamplingOptions& o, const SamplerState& s);

// Applies a row's constraint to `row` (vocab floats) in place: the biases are added, then
// every token the mask leaves out becomes -inf.
void ApplyConstraint(float* row, int64_t vocab, const LogitsConstraint& c);

// The first token the constraint allows, or -1 when it allows none below vocab.
int32_t FirstAllowed(const LogitsConstraint& c, int64_t vocab);

// Samples one token per row of `logits` ([n, vocab], float32, any device) and appends it to
// its state's `output` (so penalties see it next step). `options` and
// `states` have n entries; each state's rng advances only for its own row.
// Top-p rows without top-k (the R1 defaults) sum their weights exactly, as integers in units of
// 2^-40 of the top token's, as the device sampler on CUDA does (device_sampler.h), and find the
// top-p set and the draw's token by selection, without sorting the row.
std::vector<SampleResult> SampleBatch(const at::Tensor& logits,
                                      const std::vector<const SamplingOptions*>& options,
                                      const std::vector<SamplerState*>& states);

}  // namespace r1::engine
