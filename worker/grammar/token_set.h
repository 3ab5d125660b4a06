// A set of token ids stored the cheapest way: the ids in it, the ids not in it (of all grammar
// tokens), or a plain bitmask, whichever is smallest. A grammar state inside a string allows
// almost every token and one between JSON tokens very few, so most masks shrink to short lists.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/grammar/token_vocabulary.h"

namespace r1::grammar {

class TokenSet {
 public:
  TokenSet() = default;
  static TokenSet FromBits(const uint32_t* bits, const TokenVocabulary& vocab);
  // The ids of `candidates` whose bit is set (a list, for sets known to be small).
  static TokenSet FromCandidates(const uint32_t* bits, const std::vector<int32_t>& candidates);

  // bits := the set.
  void WriteTo(uint32_t* bits, const TokenVocabulary& vocab) const;
  // bits |= the set.
  void OrInto(uint32_t* bits, const TokenVocabulary& vocab) const;
  size_t memory_bytes() const { return ids_.size() * sizeof(uint32_t); }

 private:
  enum class Kind : uint8_t { kIn, kNotIn, kBits };
  Kind kind_ = Kind::kIn;
  std::vector<uint32_t> ids_;  // token ids, or the bitmask words for kBits
};

}  // namespace r1::grammar
