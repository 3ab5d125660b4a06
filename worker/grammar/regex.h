// A regular-expression subset (ECMAScript syntax, as JSON Schema's "pattern" and vLLM's
// guided_regex use it) compiled to a byte automaton over UTF-8:
//   literals, '.', classes [a-z] [^...] with escapes, \d \D \w \W \s \S, \t \n \r \f \v \0
//   \xHH \uHHHH \u{H...}, escaped punctuation; groups ( ) (?: ) (?<name> ); alternation |;
//   quantifiers * + ? {n} {n,} {n,m} (lazy forms match the same strings);
//   '^' at the start and '$' at the end of the pattern or of a top-level alternative.
// Anything else (backreferences, lookaround, \b, \p{...}, anchors elsewhere) is an error that
// names it. Matching is on code points, as ECMAScript's "u" flag does.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"
#include "worker/grammar/nfa.h"

namespace r1::grammar {

enum class RegexMode {
  kSearch,     // JSON Schema "pattern": matches if found anywhere unless anchored by ^ / $
  kFullMatch,  // guided_regex: the whole text must match
};

// Builds the fragment for `pattern` into nfa. Repetition counts above max_repeat are an error.
absl::StatusOr<Frag> CompileRegex(Nfa& nfa, std::string_view pattern, RegexMode mode,
                                  int64_t max_repeat);

}  // namespace r1::grammar
