// States that no token can tell apart share one cached mask. Two states are k-equivalent when
// every string of at most k bytes leads both to the same outcomes (read or refused, rule may
// end or not, same calls); with k the longest token, their context-free masks and exits are
// equal. Counting states (the 17th character of a string of at most 100) are all different
// automaton states but mostly k-equivalent, so a maxLength costs a few masks, not one per count.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/grammar/automaton.h"

namespace r1::grammar {

struct MaskClasses {
  std::vector<int32_t> of_state;  // class ids in [0, count)
  int32_t count = 0;
};

// Moore's refinement stopped after k rounds (or when stable); each round only revisits the
// predecessors of the states that changed class in the one before.
MaskClasses KEquivalenceClasses(const Automaton& a, size_t k);

}  // namespace r1::grammar
