#include "tests/grammar/grammar_test_util.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "worker/grammar/bitmask.h"
#include "worker/grammar/test_cases.h"

namespace r1::grammar::testing {

std::string SourceDir() {
  const char* d = std::getenv("R1_SOURCE_DIR");
  return d ? d : ".";
}

const tokenizer::Tokenizer& QwenTokenizer() {
  static const std::unique_ptr<tokenizer::Tokenizer> tok = [] {
    auto t = tokenizer::Tokenizer::FromFile(SourceDir() + "/.cache/tokenizer/tokenizer.json");
    if (!t.ok()) {
      ADD_FAILURE() << t.status() << " (run tools/install-deps.sh)";
      std::abort();
    }
    return std::move(*t);
  }();
  return *tok;
}

const std::shared_ptr<const TokenVocabulary>& QwenVocab() {
  static const std::shared_ptr<const TokenVocabulary> vocab = [] {
    auto v = TokenVocabulary::FromTokenizer(QwenTokenizer(), kQwenModelVocab);
    if (!v.ok()) std::abort();
    return *v;
  }();
  return vocab;
}

const std::shared_ptr<const TokenVocabulary>& ByteVocab() {
  static const std::shared_ptr<const TokenVocabulary> vocab = [] {
    std::vector<std::optional<std::string>> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(std::string(1, static_cast<char>(b)));
    return *TokenVocabulary::Create(std::move(tokens), kByteEos + 1);
  }();
  return vocab;
}

const boost::json::array& Cases() {
  static const boost::json::value doc = [] {
    auto d = LoadTestCases(SourceDir() + "/tests/grammar/cases.json");
    if (!d.ok()) {
      ADD_FAILURE() << d.status();
      std::abort();
    }
    return *d;
  }();
  return doc.at("cases").as_array();
}

const boost::json::object& Case(const std::string& name) {
  for (const auto& c : Cases())
    if (c.at("name").as_string() == name) return c.as_object();
  ADD_FAILURE() << "no case " << name;
  std::abort();
}

std::vector<uint32_t> BruteForceMask(const GrammarMatcher& m, int32_t eos) {
  const TokenVocabulary& vocab = m.grammar().vocabulary();
  std::vector<uint32_t> bits(vocab.bitmask_words(), 0);
  for (int32_t id = 0; id < vocab.vocab_size(); ++id)
    if (vocab.IsGrammarToken(id) && m.CanAcceptBytes(vocab.TokenBytes(id))) SetBit(bits.data(), id);
  if (m.IsComplete()) SetBit(bits.data(), eos);
  return bits;
}

}  // namespace r1::grammar::testing
