// Random texts of a grammar, token by token over the real vocabulary, for tests and the bench:
// at each step a token is drawn uniformly from the mask (end-of-sequence with a set chance
// when allowed). Past max_tokens the walk heads for the end: it takes, among the allowed
// single-byte tokens and a sample of others, the one that leaves the fewest bytes to complete.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "worker/grammar/matcher.h"

namespace r1::grammar {

struct WalkOptions {
  int max_tokens = 200;
  double eos_probability = 0.5;
  // Called for every mask (the bench times it); default: m.FillNextTokenBitmask(bits).
  std::function<void(const GrammarMatcher& m, uint32_t* bits)> fill;
};

struct WalkResult {
  std::vector<int32_t> ids;  // end-of-sequence excluded
  std::string text;          // the bytes of ids
  bool complete = false;     // ended with end-of-sequence
};

WalkResult RandomWalk(GrammarMatcher& m, int32_t eos_id, std::mt19937_64& rng,
                      const WalkOptions& options);

// The index of the r-th set bit (r < number of set bits).
int32_t NthSetBit(const uint32_t* bits, size_t words, uint64_t r);

}  // namespace r1::grammar
