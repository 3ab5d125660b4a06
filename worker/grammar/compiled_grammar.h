// A grammar compiled for one vocabulary: the linked automaton, the mask classes of its states
// and the masks computed so far. Immutable to its users and shared by every matcher (the
// caches inside are thread-safe), so a schema compiles once for all requests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/grammar/automaton.h"
#include "worker/grammar/mask_cache.h"
#include "worker/grammar/mask_classes.h"
#include "worker/grammar/schema_compiler.h"
#include "worker/grammar/stack_closure.h"
#include "worker/grammar/token_vocabulary.h"

namespace r1::grammar {

class CompiledGrammar {
 public:
  // max_cache_bytes bounds the masks kept (least recently used dropped first).
  static absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Create(
      const GrammarRules& rules, std::shared_ptr<const TokenVocabulary> vocab,
      size_t max_cache_bytes);

  const Automaton& automaton() const { return automaton_; }
  const TokenVocabulary& vocabulary() const { return *vocab_; }
  // Sets bits to the tokens some stack can read (end-of-sequence not included). Stacks come
  // from Expand: every top reads bytes.
  void FillMask(const std::vector<Stack>& stacks, uint32_t* bits) const;

  size_t num_states() const { return automaton_.num_states(); }
  int32_t num_mask_classes() const { return short_classes_.count; }
  MaskStats stats() const { return cache_.stats(); }

 private:
  CompiledGrammar(Automaton a, std::shared_ptr<const TokenVocabulary> vocab,
                  size_t max_cache_bytes);
  // The context-free mask of the short or the long tokens, shared by the state's mask class.
  std::shared_ptr<const ContextFreeMask> ContextFreeOf(MaskKind kind, int32_t state) const;
  // bits := (or |=) every token state q reads in a fresh frame.
  void ContextFreeTokens(int32_t q, bool overwrite, uint32_t* bits) const;
  // bits := (or |=) the short or the long tokens the stacks read, through the stack LRU.
  void StackMask(MaskKind kind, const std::vector<Stack>& stacks, bool overwrite,
                 uint32_t* bits) const;

  Automaton automaton_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  MaskClasses short_classes_;  // k = the short-token length
  MaskClasses long_classes_;   // k = the longest token
  mutable MaskCache cache_;
};

}  // namespace r1::grammar
