// The grammar engine's limits as command-line flags (--grammar-...), for the programs that
// compile grammars: AddGrammarFlags before Flags::Parse, then CompilerOptionsFromFlags.
#pragma once

#include <cstdint>

#include "common/flags.h"
#include "common/status.h"
#include "worker/grammar/compiler.h"

namespace r1::grammar {

struct GrammarFlags {
  int64_t* max_whitespace;
  int64_t* max_integer_digits;
  int64_t* max_fraction_digits;
  int64_t* max_exponent_digits;
  int64_t* max_repeat;
  int64_t* max_states;
  bool* strict_properties;
  int64_t* cache_entries;
  int64_t* mask_cache_mb;
};

// Registers the flags with the defaults of CompilerOptions.
GrammarFlags AddGrammarFlags(Flags& flags);
// The options the flags say; InvalidArgument naming the flag when a value is out of range.
absl::StatusOr<CompilerOptions> CompilerOptionsFromFlags(const GrammarFlags& f);

}  // namespace r1::grammar
