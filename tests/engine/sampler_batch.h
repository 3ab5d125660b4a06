// Sampler test helpers: a mixed set of sampling options, and n sequences' options and states
// with the pointer vectors SampleBatch and SampleBatchOnDevice take.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/engine/sampler.h"

namespace r1::engine {

// Greedy, penalised greedy, temperature, top-k, top-p, min-p with presence, top-k beyond
// the device sampler's topk limit with top-p, and log-probabilities.
inline std::vector<SamplingOptions> MixedOptions() {
  std::vector<SamplingOptions> o(8);
  o[1].repetition_penalty = 1.5f;
  o[2].temperature = 1.f;
  o[3].temperature = 0.8f;
  o[3].top_k = 40;
  o[4].temperature = 1.2f;
  o[4].top_p = 0.9f;
  o[5].temperature = 1.f;
  o[5].min_p = 0.05f;
  o[5].presence_penalty = 0.3f;
  o[6].temperature = 0.9f;
  o[6].top_k = 3000;  // more than kMaxTopK: the full-sort path
  o[6].top_p = 0.7f;
  o[7].temperature = 1.f;
  o[7].logprobs = true;
  o[7].top_logprobs = 2;
  return o;
}

// Row i has options[i] and a state seeded first_seed + i.
struct SamplerBatch {
  SamplerBatch(std::vector<SamplingOptions> o, uint64_t first_seed)
      : options(std::move(o)), states(options.size(), SamplerState(0)) {
    for (size_t i = 0; i < options.size(); ++i) {
      states[i] = SamplerState(first_seed + i);
      opts.push_back(&options[i]);
    }
    for (SamplerState& s : states) ptrs.push_back(&s);
  }
  SamplerBatch(const SamplerBatch&) = delete;

  std::vector<SamplingOptions> options;
  std::vector<SamplerState> states;
  std::vector<const SamplingOptions*> opts;
  std::vector<SamplerState*> ptrs;
};

}  // namespace r1::engine
