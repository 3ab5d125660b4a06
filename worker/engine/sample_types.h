// What the sampler keeps per sequence and returns per row. Torch-free, so the output processor
// and the engine's request state need no torch.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace r1::engine {

// Per-sequence state the sampler needs: its random stream (seeded by the request's seed, so a
// seed repeats) and the tokens seen so far (for the penalties).
struct SamplerState {
  explicit SamplerState(uint64_t seed) : rng(seed) {}
  std::mt19937_64 rng;
  std::vector<int32_t> prompt;  // for the repetition penalty
  std::vector<int32_t> output;  // for all three penalties
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.f;                                 // log p(token), unpenalised model
  std::vector<std::pair<int32_t, float>> top;          // most likely alternatives
};

}  // namespace r1::engine
