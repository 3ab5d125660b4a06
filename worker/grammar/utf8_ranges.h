// Sets of Unicode code points, and the UTF-8 byte paths that spell them, so that character
// classes of patterns and "any character" of JSON strings become byte automata. Surrogates
// (U+D800..U+DFFF) are never spelled: they are not valid UTF-8.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "worker/grammar/nfa.h"

namespace r1::grammar {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Sorted, disjoint, non-adjacent closed intervals.
class CodepointSet {
 public:
  CodepointSet() = default;
  static CodepointSet Of(uint32_t lo, uint32_t hi);
  static CodepointSet All();  // every scalar value (no surrogates)

  void Add(uint32_t lo, uint32_t hi);
  void Add(const CodepointSet& other);
  // Every scalar value not in the set.
  CodepointSet Complement() const;
  bool empty() const { return ranges_.empty(); }
  const std::vector<std::pair<uint32_t, uint32_t>>& ranges() const { return ranges_; }

 private:
  void Normalize();
  std::vector<std::pair<uint32_t, uint32_t>> ranges_;
};

// Adds byte paths from `from` to `to` spelling exactly the code points of `set` in UTF-8.
void AddUtf8Paths(Nfa& nfa, int32_t from, int32_t to, const CodepointSet& set);
Frag CodepointFrag(Nfa& nfa, const CodepointSet& set);

}  // namespace r1::grammar
