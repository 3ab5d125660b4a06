// One constrained sequence: where the text is in the grammar, the next-token mask, and
// accepting tokens. Cheap to create and to copy (a few small stacks); not thread-safe, but
// every matcher of a grammar shares its compiled caches safely.
//
//   GrammarMatcher m(grammar, {eos_id});
//   m.FillNextTokenBitmask(bits);   // bitmask_words() words; bit set = token allowed
//   ... the sampler picks id among the set bits ...
//   m.AcceptToken(id);              // false (and no change) for a token the grammar refuses
//
// A token is allowed when the grammar can read all of its bytes from here (tokens that split a
// UTF-8 character included). Special and added tokens never are; the end-of-sequence ids are
// allowed exactly when the text so far is complete, and after one nothing more is.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "worker/grammar/compiled_grammar.h"
#include "worker/grammar/stack_closure.h"

namespace r1::grammar {

class GrammarMatcher {
 public:
  GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar, std::vector<int32_t> eos_ids);

  size_t bitmask_words() const { return grammar_->vocabulary().bitmask_words(); }
  void FillNextTokenBitmask(uint32_t* bits) const;
  bool AcceptToken(int32_t id);
  // The text so far is a complete value: end-of-sequence is allowed.
  bool IsComplete() const { return complete_ && !terminated_; }
  // Some token other than end-of-sequence may follow.
  bool CanContinue() const { return !terminated_ && !stacks_.empty(); }
  // An end-of-sequence token was accepted.
  bool IsTerminated() const { return terminated_; }
  // Back to the start of the text.
  void Reset();

  // Reads bytes directly (the reference the masks are tested against); false and no change
  // when the grammar refuses them.
  bool AcceptBytes(std::string_view bytes);
  bool CanAcceptBytes(std::string_view bytes) const;
  // Fewest bytes that make the text complete (0 when it is).
  uint32_t MinBytesToComplete() const;

  const CompiledGrammar& grammar() const { return *grammar_; }

 private:
  // The state after reading bytes from the current one; false when some byte is refused.
  bool Step(std::string_view bytes, std::vector<Stack>* stacks, bool* complete) const;

  std::shared_ptr<const CompiledGrammar> grammar_;
  std::vector<int32_t> eos_ids_;
  std::vector<Stack> stacks_;  // every top reads bytes
  bool complete_ = false;
  bool terminated_ = false;
};

}  // namespace r1::grammar
