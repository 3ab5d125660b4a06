#include "worker/grammar/grammar_flags.h"

namespace r1::grammar {

GrammarFlags AddGrammarFlags(Flags& flags) {
  const CompilerOptions d;
  const GrammarOptions& g = d.grammar;
  GrammarFlags f;
  f.max_whitespace = flags.Int("grammar-max-whitespace", g.max_whitespace,
                               "structured outputs: longest whitespace run between JSON tokens");
  f.max_integer_digits = flags.Int("grammar-max-integer-digits", g.max_integer_digits,
                                   "structured outputs: digits of a number's integer part (1-18)");
  f.max_fraction_digits = flags.Int("grammar-max-fraction-digits", g.max_fraction_digits,
                                    "structured outputs: digits of a number's fraction");
  f.max_exponent_digits = flags.Int("grammar-max-exponent-digits", g.max_exponent_digits,
                                    "structured outputs: digits of a number's exponent (0-2)");
  f.max_repeat = flags.Int("grammar-max-repeat", g.max_repeat,
                           "structured outputs: largest {n,m} count in a pattern");
  f.max_states = flags.Int("grammar-max-states", g.max_states,
                           "structured outputs: automaton states one schema may need");
  f.strict_properties = flags.Bool(
      "grammar-strict-properties", g.strict_properties,
      "structured outputs: write only listed properties unless additionalProperties allows more");
  f.cache_entries = flags.Int("grammar-cache-entries", static_cast<int64_t>(d.cache_entries),
                              "structured outputs: compiled schemas kept");
  f.mask_cache_mb = flags.Int("grammar-mask-cache-mb", static_cast<int64_t>(d.mask_cache_bytes >> 20),
                              "structured outputs: MiB of token masks cached per schema");
  return f;
}

absl::StatusOr<CompilerOptions> CompilerOptionsFromFlags(const GrammarFlags& f) {
  CompilerOptions o;
  o.grammar.max_whitespace = *f.max_whitespace;
  o.grammar.max_integer_digits = *f.max_integer_digits;
  o.grammar.max_fraction_digits = *f.max_fraction_digits;
  o.grammar.max_exponent_digits = *f.max_exponent_digits;
  o.grammar.max_repeat = *f.max_repeat;
  o.grammar.max_states = *f.max_states;
  o.grammar.strict_properties = *f.strict_properties;
  R1_RETURN_IF_ERROR(o.grammar.Validate(/*flag_names=*/true));
  if (*f.cache_entries < 0) return absl::InvalidArgumentError("--grammar-cache-entries must be >= 0");
  if (*f.mask_cache_mb < 0) return absl::InvalidArgumentError("--grammar-mask-cache-mb must be >= 0");
  o.cache_entries = static_cast<size_t>(*f.cache_entries);
  o.mask_cache_bytes = static_cast<size_t>(*f.mask_cache_mb) << 20;
  return o;
}

}  // namespace r1::grammar
