#include "loadtest/prompt.h"

#include <array>
#include <string_view>

namespace r1::loadtest {
namespace {

constexpr std::array<std::string_view, 48> kWords = {
    "the",   "of",    "and",   "to",    "in",    "is",    "it",    "that",
    "was",   "for",   "on",    "are",   "with",  "as",    "be",    "at",
    "one",   "have",  "this",  "from",  "by",    "not",   "but",   "what",
    "all",   "were",  "when",  "we",    "there", "can",   "an",    "your",
    "which", "their", "said",  "if",    "do",    "will",  "each",  "about",
    "how",   "up",    "out",   "them",  "then",  "she",   "many",  "some"};

}  // namespace

std::string MakePrompt(int64_t words, Random& rng) {
  std::string s;
  s.reserve(static_cast<size_t>(words) * 6);
  for (int64_t i = 0; i < words; ++i) {
    s += ' ';
    s += kWords[rng.Below(kWords.size())];
  }
  return s;
}

}  // namespace r1::loadtest
