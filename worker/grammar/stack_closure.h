// Moves of a matcher's stacks that read nothing: entering a called rule (push) and leaving a
// rule that may end (pop). A state is kept as the set of stacks reached this way whose top
// reads bytes; whether some path empties the stack says if the text so far is complete.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/grammar/automaton.h"

namespace r1::grammar {

using Stack = std::vector<int32_t>;

struct Expansion {
  std::vector<Stack> ready;  // sorted, unique; each top reads bytes
  bool floor_done = false;   // some path finishes the frame at `floor` (floor 0: the whole text)
};

// Expands `stack` without going below `floor` frames (popping the frame at index floor - 1 is
// reported as floor_done instead). Appends to *out.
void Expand(const Automaton& a, const Stack& stack, size_t floor, Expansion* out);
// Sorts and removes duplicate stacks.
void SortUnique(std::vector<Stack>* stacks);

}  // namespace r1::grammar
