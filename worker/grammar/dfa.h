// Deterministic automata over bytes (with calls kept as symbols), made from an Nfa by the
// subset construction, and the operations the schema compiler needs on them: intersection and
// difference (only for call-free automata), minimisation, and embedding back into an Nfa.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "worker/grammar/nfa.h"

namespace r1::grammar {

struct DfaState {
  std::vector<ByteRange> bytes;  // sorted, disjoint; a byte without a range leads nowhere
  std::vector<CallEdge> calls;   // sorted by rule, one per rule
  bool accept = false;
};

struct Dfa {
  std::vector<DfaState> states;
  int32_t start = 0;

  bool HasCalls() const;
  // True when no string is accepted (ignoring what calls may do).
  bool Empty() const;
};

// The strings from f.in to f.out. Fails past max_states DFA states, or when nfa overflowed.
absl::StatusOr<Dfa> Determinize(const Nfa& nfa, Frag f, size_t max_states);
// Strings both accept. Both must be call-free.
Dfa Intersect(const Dfa& a, const Dfa& b);
// Strings a accepts and b does not. Both must be call-free.
Dfa Subtract(const Dfa& a, const Dfa& b);
// Keeps the states that are reachable and, for call-free automata, can still reach an accepting
// state (with calls every reachable state is kept: whether a call completes is decided later).
Dfa Trim(const Dfa& d);
// The smallest equivalent automaton (Moore's partition refinement; calls compared by rule),
// or d itself when it is too large to refine quickly.
Dfa Minimize(const Dfa& d);
// Copies d into nfa as a fragment.
Frag Embed(Nfa& nfa, const Dfa& d);

}  // namespace r1::grammar
