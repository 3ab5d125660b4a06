#include "worker/grammar/compiled_grammar.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "worker/grammar/trie_walker.h"

namespace r1::grammar {
namespace {

uint64_t NanosSince(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now() - t0)
                                   .count());
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::Create(
    const GrammarRules& rules, std::shared_ptr<const TokenVocabulary> vocab,
    size_t max_cache_bytes) {
  R1_ASSIGN_OR_RETURN(Automaton a, Automaton::Link(rules.rules, rules.root));
  return std::shared_ptr<const CompiledGrammar>(
      new CompiledGrammar(std::move(a), std::move(vocab), max_cache_bytes));
}

CompiledGrammar::CompiledGrammar(Automaton a, std::shared_ptr<const TokenVocabulary> vocab,
                                 size_t max_cache_bytes)
    : automaton_(std::move(a)),
      vocab_(std::move(vocab)),
      cache_(max_cache_bytes) {
  auto classes = KEquivalenceClasses(
      automaton_, {TokenVocabulary::kShortTokenBytes,
                   std::max(TokenVocabulary::kShortTokenBytes, vocab_->max_token_bytes())});
  short_classes_ = std::move(classes[0]);
  long_classes_ = std::move(classes[1]);
}

std::shared_ptr<const ContextFreeMask> CompiledGrammar::ContextFreeOf(MaskKind kind,
                                                                     int32_t state) const {
  const bool short_tokens = kind == MaskKind::kContextFree;
  const int32_t id = (short_tokens ? short_classes_ : long_classes_).of_state[state];
  if (auto m = cache_.ContextFree(kind, id)) {
    cache_.Count(kind, /*hit=*/true, 0);
    return m;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const TokenTrie& trie = short_tokens ? vocab_->short_trie() : vocab_->long_trie();
  std::vector<uint32_t> bits(vocab_->bitmask_words(), 0);
  ContextFreeMask m;
  TrieWalker(automaton_, *vocab_, trie).ContextFree(state, bits.data(), &m.exits);
  std::sort(m.exits.begin(), m.exits.end());
  m.exits.erase(std::unique(m.exits.begin(), m.exits.end()), m.exits.end());
  // The long tokens are few: listing them beats scanning the whole mask.
  m.tokens = short_tokens ? TokenSet::FromBits(bits.data(), *vocab_)
                          : TokenSet::FromCandidates(bits.data(), vocab_->long_tokens());
  auto stored = cache_.PutContextFree(kind, id, std::move(m));
  cache_.Count(kind, /*hit=*/false, NanosSince(t0));
  return stored;
}

void CompiledGrammar::ContextFreeTokens(int32_t q, bool overwrite, uint32_t* bits) const {
  const auto short_tokens = ContextFreeOf(MaskKind::kContextFree, q);
  if (overwrite) short_tokens->tokens.WriteTo(bits, *vocab_);
  else short_tokens->tokens.OrInto(bits, *vocab_);
  ContextFreeOf(MaskKind::kLongTokens, q)->tokens.OrInto(bits, *vocab_);
}

void CompiledGrammar::FillMask(const std::vector<Stack>& stacks, uint32_t* bits) const {
  bool nested = false;
  for (const Stack& s : stacks) nested = nested || s.size() > 1;
  if (!nested) {
    // One frame per stack: a token is read in the frame or not at all (exits lead past the
    // end of the text), so the context-free masks are the whole answer.
    if (stacks.empty()) {
      std::memset(bits, 0, vocab_->bitmask_words() * sizeof(uint32_t));
      return;
    }
    for (size_t i = 0; i < stacks.size(); ++i) ContextFreeTokens(stacks[i].back(), i == 0, bits);
    return;
  }
  // Short and long tokens are cached apart, each by the top's mask class for them.
  StackMask(MaskKind::kContextFree, stacks, /*overwrite=*/true, bits);
  StackMask(MaskKind::kLongTokens, stacks, /*overwrite=*/false, bits);
}

void CompiledGrammar::StackMask(MaskKind kind, const std::vector<Stack>& stacks, bool overwrite,
                                uint32_t* bits) const {
  // The key: the kind, then per stack its size, the top's mask class and the frames below it
  // exactly.
  const bool short_tokens = kind == MaskKind::kContextFree;
  const MaskClasses& classes = short_tokens ? short_classes_ : long_classes_;
  std::vector<std::vector<int32_t>> parts;
  for (const Stack& s : stacks) {
    std::vector<int32_t> p = {static_cast<int32_t>(s.size()), classes.of_state[s.back()]};
    p.insert(p.end(), s.begin(), s.end() - 1);
    parts.push_back(std::move(p));
  }
  std::sort(parts.begin(), parts.end());
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  std::string key(1, short_tokens ? 'c' : 'l');
  for (const auto& p : parts) key.append(reinterpret_cast<const char*>(p.data()), p.size() * 4);
  std::shared_ptr<const TokenSet> tokens = cache_.StackMask(key);
  if (tokens) {
    cache_.Count(MaskKind::kStack, /*hit=*/true, 0);
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<uint32_t> computed(vocab_->bitmask_words(), 0);
    const TokenTrie& trie = short_tokens ? vocab_->short_trie() : vocab_->long_trie();
    TrieWalker walker(automaton_, *vocab_, trie);
    for (const Stack& s : stacks) {
      auto cf = ContextFreeOf(kind, s.back());
      cf->tokens.OrInto(computed.data(), *vocab_);
      // Tokens that end the top rule midway continue in the frames below.
      if (s.size() > 1 && !cf->exits.empty())
        walker.FromNodes(cf->exits, Stack(s.begin(), s.end() - 1), computed.data());
    }
    tokens = std::make_shared<const TokenSet>(TokenSet::FromBits(computed.data(), *vocab_));
    cache_.PutStackMask(key, *tokens);
    cache_.Count(MaskKind::kStack, /*hit=*/false, NanosSince(t0));
  }
  if (overwrite) tokens->WriteTo(bits, *vocab_);
  else tokens->OrInto(bits, *vocab_);
}

}  // namespace r1::grammar
