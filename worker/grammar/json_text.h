// JSON text exactly as the grammars spell it: no whitespace, strings escaped one way only (so
// a string has exactly one spelling, and "a key other than these names" is a plain automaton
// difference), numbers in their shortest form. Used for enum and const literals and keys.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/value.hpp>

namespace r1::grammar {

// The escape a byte needs inside a JSON string: "" when it is written as is. Short escapes
// for " \ \b \f \n \r \t, \u00xx (lower-case hex) for the other control characters.
std::string JsonEscape(uint8_t b);
// "..." with the escapes above. `utf8` must be valid UTF-8.
std::string QuoteJsonString(std::string_view utf8);
std::string CanonicalJson(const boost::json::value& v);

}  // namespace r1::grammar
