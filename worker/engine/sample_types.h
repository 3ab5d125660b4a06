// What the sampler keeps per sequence and returns per row. Torch-free, so the output processor
// and the engine's request state need no torch.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace r1::engine {

// Limits on one row's next token, beyond its sampling options: which tokens may come (a
// structured output's grammar mask, a forced token) and additive biases (logit_bias; -inf for
// tokens banned by min_tokens). The engine fills it before each sampled step
// (token_constraints.h); both samplers apply it after the penalties and before temperature,
// top-k, top-p and min-p. An inactive one costs the row nothing.
struct LogitsConstraint {
  // Allowed tokens: bit (id % 32) of word (id / 32) set; words past the end count as 0.
  // Empty: every token.
  std::vector<uint32_t> allowed;
  // (token, amount) added to the logits; -inf bans the token.
  std::vector<std::pair<int32_t, float>> bias;

  bool active() const { return !allowed.empty() || !bias.empty(); }
  bool Allows(int32_t id) const {
    if (allowed.empty()) return true;
    const size_t w = static_cast<size_t>(id) >> 5;
    return w < allowed.size() && ((allowed[w] >> (id & 31)) & 1u);
  }
  // Keeps the capacity: a constrained row fills it again every step.
  void Clear() {
    allowed.clear();
    bias.clear();
  }
};

// Per-sequence state the sampler needs: its random stream (seeded by the request's seed, so a
// seed repeats), the tokens seen so far (for the penalties) and this step's constraint.
struct SamplerState {
  explicit SamplerState(uint64_t seed) : rng(seed) {}
  std::mt19937_64 rng;
  std::vector<int32_t> prompt;  // for the repetition penalty
  std::vector<int32_t> output;  // for all three penalties
  LogitsConstraint constraint;  // for the next token only
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.f;                                 // log p(token), unpenalised model
  std::vector<std::pair<int32_t, float>> top;          // most likely alternatives
};

}  // namespace r1::engine
