// The Split pre-tokenizer (behavior "Isolated"): every regex match is a piece, and so is
// every stretch of text between matches. The pattern is compiled with PCRE2 (UTF, UCP, JIT);
// \s and \S are widened to Oniguruma's Unicode White_Space (which adds U+0085) so that
// splits equal Hugging Face tokenizers'.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace r1::tokenizer {

class RegexSplitter {
 public:
  // `literal`: the pattern is a plain string ({"String": ...} in tokenizer.json).
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(const std::string& pattern,
                                                               bool literal);
  ~RegexSplitter();

  // Appends [begin, end) offsets (relative to text) of the pieces, in order, to *out.
  void Split(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>* out) const;

 private:
  RegexSplitter() = default;
  void* code_ = nullptr;  // pcre2_code_8*
};

// The rewrite applied before compiling (exposed for tests).
std::string WidenWhitespaceClasses(const std::string& pattern);

}  // namespace r1::tokenizer
