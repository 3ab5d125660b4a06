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
      classes_(KEquivalenceClasses(automaton_, vocab_->max_token_bytes())),
      cache_(max_cache_bytes) {}

std::shared_ptr<const ContextFreeMask> CompiledGrammar::ContextFreeOf(int32_t state) const {
  const int32_t cls = classes_.of_state[state];
  if (auto m = cache_.ContextFree(cls)) {
    cache_.Count(/*context_free=*/true, /*hit=*/true, 0);
    return m;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint32_t> bits(vocab_->bitmask_words(), 0);
  ContextFreeMask m;
  TrieWalker(automaton_, *vocab_).ContextFree(state, bits.data(), &m.exits);
  std::sort(m.exits.begin(), m.exits.end());
  m.exits.erase(std::unique(m.exits.begin(), m.exits.end()), m.exits.end());
  m.tokens = TokenSet::FromBits(bits.data(), *vocab_);
  auto stored = cache_.PutContextFree(cls, std::move(m));
  cache_.Count(/*context_free=*/true, /*hit=*/false, NanosSince(t0));
  return stored;
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
    ContextFreeOf(stacks[0].back())->tokens.WriteTo(bits, *vocab_);
    for (size_t i = 1; i < stacks.size(); ++i)
      ContextFreeOf(stacks[i].back())->tokens.OrInto(bits, *vocab_);
    return;
  }
  // The key: per stack, the top's mask class and the frames below it exactly.
  std::vector<std::vector<int32_t>> parts;
  for (const Stack& s : stacks) {
    std::vector<int32_t> p = {static_cast<int32_t>(s.size()), classes_.of_state[s.back()]};
    p.insert(p.end(), s.begin(), s.end() - 1);
    parts.push_back(std::move(p));
  }
  std::sort(parts.begin(), parts.end());
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  std::string key;
  for (const auto& p : parts) key.append(reinterpret_cast<const char*>(p.data()), p.size() * 4);
  if (auto hit = cache_.StackMask(key)) {
    hit->WriteTo(bits, *vocab_);
    cache_.Count(/*context_free=*/false, /*hit=*/true, 0);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  ComputeStackMask(stacks, bits);
  cache_.PutStackMask(key, TokenSet::FromBits(bits, *vocab_));
  cache_.Count(/*context_free=*/false, /*hit=*/false, NanosSince(t0));
}

void CompiledGrammar::ComputeStackMask(const std::vector<Stack>& stacks, uint32_t* bits) const {
  std::memset(bits, 0, vocab_->bitmask_words() * sizeof(uint32_t));
  TrieWalker walker(automaton_, *vocab_);
  for (const Stack& s : stacks) {
    auto cf = ContextFreeOf(s.back());
    cf->tokens.OrInto(bits, *vocab_);
    // Tokens that end the top rule midway continue in the frames below.
    if (s.size() > 1 && !cf->exits.empty())
      walker.FromNodes(cf->exits, Stack(s.begin(), s.end() - 1), bits);
  }
}

}  // namespace r1::grammar
