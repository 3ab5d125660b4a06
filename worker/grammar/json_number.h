// Automata for JSON numbers, with exact decimal bounds. Bounds are compared digit by digit on
// the text, so "minimum": 0.1 admits 0.1 but not 0.0999. What the text may look like:
//   integer: -?(0|[1-9][0-9]*), at most max_integer_digits digits;
//   number:  as integer, then an optional fraction (at most max_fraction_digits digits) and,
//            without bounds, an optional exponent (at most max_exponent_digits digits);
//            with bounds, no exponent and at most 15 significant digits, so two different
//            texts never read back as the same double (an exclusive bound stays exclusive);
//   never a negative zero.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <boost/json/value.hpp>

#include "common/status.h"
#include "worker/grammar/dfa.h"

namespace r1::grammar {

// An exact decimal: int_digits has no leading zeros ("0" for zero), frac_digits no trailing
// zeros; zero is never negative.
struct Decimal {
  bool neg = false;
  std::string int_digits = "0";
  std::string frac_digits;
};

// The exact value of a JSON number (a double is taken as its shortest decimal form).
absl::StatusOr<Decimal> DecimalOf(const boost::json::value& v);
// -1, 0 or 1.
int CompareDecimal(const Decimal& a, const Decimal& b);

struct NumberBound {
  Decimal value;
  bool exclusive = false;
};

struct NumberSpec {
  bool integer = false;
  std::optional<NumberBound> lo, hi;
  int max_integer_digits = 15;
  int max_fraction_digits = 15;
  int max_exponent_digits = 2;
};

// The number's text; an empty automaton (Dfa::Empty) when no number fits.
Dfa JsonNumberDfa(const NumberSpec& spec);

}  // namespace r1::grammar
