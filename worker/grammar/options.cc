#include "worker/grammar/options.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace r1::grammar {
namespace {

absl::Status InRange(const char* name, bool flag_names, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return absl::OkStatus();
  std::string shown = name;
  if (flag_names) {
    std::replace(shown.begin(), shown.end(), '_', '-');
    shown = "--grammar-" + shown;
  } else {
    shown = "grammar option " + shown;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(shown, " = ", v, " is outside [", lo, ", ", hi, "]"));
}

}  // namespace

absl::Status GrammarOptions::Validate(bool flag_names) const {
  const bool f = flag_names;
  R1_RETURN_IF_ERROR(InRange("max_whitespace", f, max_whitespace, 0, 100));
  // 18 digits stay inside int64; exponents of 3 digits could overflow a double (1e999).
  R1_RETURN_IF_ERROR(InRange("max_integer_digits", f, max_integer_digits, 1, 18));
  R1_RETURN_IF_ERROR(InRange("max_fraction_digits", f, max_fraction_digits, 0, 100));
  R1_RETURN_IF_ERROR(InRange("max_exponent_digits", f, max_exponent_digits, 0, 2));
  R1_RETURN_IF_ERROR(InRange("max_repeat", f, max_repeat, 1, 1000000));
  R1_RETURN_IF_ERROR(InRange("max_states", f, max_states, 100, 100000000));
  return absl::OkStatus();
}

}  // namespace r1::grammar
