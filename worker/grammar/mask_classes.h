// States that no short token can tell apart share one cached mask. Two states are
// k-equivalent when every string of at most k bytes leads both to the same outcomes (read or
// refused, rule may end or not, same calls); with k = TokenVocabulary::kShortTokenBytes, their
// context-free masks of the short tokens, exits included, are equal; the few longer tokens use
// k = the longest token. Counting states (the 17th character of a string of at most 1000) are
// all different automaton states but mostly k-equivalent, so a maxLength costs masks only for
// the counts within k characters of a bound.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/grammar/automaton.h"

namespace r1::grammar {

struct MaskClasses {
  std::vector<int32_t> of_state;  // class ids in [0, count)
  int32_t count = 0;
};

// Moore's refinement stopped after k rounds (or when stable), for each k of ks (ascending):
// one partition per k. Each round only revisits the predecessors of the states that changed
// class in the one before.
std::vector<MaskClasses> KEquivalenceClasses(const Automaton& a, const std::vector<size_t>& ks);

}  // namespace r1::grammar
