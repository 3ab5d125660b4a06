// Automata for JSON strings: the text between the quotes is built over the decoded characters
// (any character, a length range in code points, a pattern), then spelled with the escapes of
// json_text.h, so lengths and patterns apply to the string's value as JSON Schema says.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "worker/grammar/dfa.h"

namespace r1::grammar {

struct StringSpec {
  int64_t min_length = 0;
  int64_t max_length = -1;  // < 0: unbounded
  std::optional<std::string> pattern;  // JSON Schema "pattern" (search semantics)
};

struct StringLimits {
  size_t max_states;   // automaton size limit
  int64_t max_repeat;  // largest count in a pattern quantifier
};

// The whole JSON string, quotes included.
absl::StatusOr<Dfa> JsonStringDfa(const StringSpec& spec, const StringLimits& limits);
// The decoded value's automaton spelled as JSON string text, quotes included.
Dfa QuoteDfa(const Dfa& decoded);

}  // namespace r1::grammar
