// Shared by the grammar tests: the real Qwen vocabulary, the cases of cases.json, and the
// brute-force reference mask.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "worker/grammar/compiler.h"
#include "worker/grammar/matcher.h"
#include "worker/grammar/token_vocabulary.h"
#include "worker/tokenizer/tokenizer.h"

namespace r1::grammar::testing {

// Qwen2's model vocabulary is padded to this many rows past the tokenizer's 151,665 ids.
constexpr int64_t kQwenModelVocab = 151936;
constexpr int32_t kEos = 151643;  // <|endoftext|>

std::string SourceDir();
// .cache/tokenizer/tokenizer.json (tools/install-deps.sh).
const tokenizer::Tokenizer& QwenTokenizer();
// QwenTokenizer's vocabulary with the model's vocabulary size.
const std::shared_ptr<const TokenVocabulary>& QwenVocab();
// A vocabulary of the 256 single bytes (ids 0-255) and end-of-sequence kByteEos, for tests of
// the grammars themselves (no tokenizer to load).
constexpr int32_t kByteEos = 256;
const std::shared_ptr<const TokenVocabulary>& ByteVocab();
// tests/grammar/cases.json: {"cases": [{"name", "kind", ...}]}.
const boost::json::array& Cases();
const boost::json::object& Case(const std::string& name);
// The mask by trying every token's bytes on a copy of the matcher (plus EOS when complete).
std::vector<uint32_t> BruteForceMask(const GrammarMatcher& m, int32_t eos);

}  // namespace r1::grammar::testing
