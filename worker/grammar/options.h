// What a compiled grammar may generate, beyond what the schema says: every limit here is a
// knob with a default (grammar_flags.h turns them into command-line flags).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace r1::grammar {

struct GrammarOptions {
  // Longest run of whitespace (space, \n, \r, \t) between JSON tokens, and before the value;
  // 0 gives compact JSON. Bounded so that a model cannot pad forever.
  int64_t max_whitespace = 8;
  // Digits of a number's integer part, fraction and exponent (see json_number.h).
  int64_t max_integer_digits = 15;
  int64_t max_fraction_digits = 15;
  int64_t max_exponent_digits = 2;
  // Largest count in a pattern's quantifier ({n,m}).
  int64_t max_repeat = 1000;
  // Automaton states one grammar may have; a schema that needs more is refused.
  int64_t max_states = 200000;
  // Properties a schema does not list are generated only when "additionalProperties" allows
  // them explicitly (true or a schema). An object schema that lists no properties at all
  // ({"type":"object"}) takes any properties either way.
  bool strict_properties = true;

  // An out-of-range value is InvalidArgument naming the option (as its --grammar-* flag when
  // flag_names).
  absl::Status Validate(bool flag_names = false) const;
};

}  // namespace r1::grammar
