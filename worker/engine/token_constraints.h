// What limits one sequence's next token beyond its sampling options, turned into the
// sampler's LogitsConstraint before each sampled step. Torch-free; owned by the request's
// state on the engine thread (Prepare may run on a worker thread of the step, one sequence
// per thread).
//
//  - The thought. When the prompt opens one ("<think>" after the last "</think>": the
//    DeepSeek-R1 template's generation prompt ends in "<think>\n"), the tokens up to "</think>"
//    are free. After the thinking budget's tokens of it, the budget message and "</think>"
//    are forced, one token a step, as an allowed set of one token.
//  - The structured output. A GrammarMatcher starts at "</think>" (at the first token when the
//    prompt opens no thought); its mask is the allowed set, end-of-sequence included only once
//    the text is complete (so are the stop ids, which end it too). While a constrained request
//    still thinks, end-of-sequence and the stop ids are banned: the answer must come.
//  - min_tokens: end-of-sequence and the stop ids are banned until that many tokens, unless the
//    grammar allows nothing else (a complete answer that cannot go on ends).
//  - logit_bias: added as given.
// A request with none of these gets an inactive constraint: its row pays nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/engine/engine.h"
#include "worker/engine/sample_types.h"
#include "worker/grammar/matcher.h"

namespace r1::engine {

class TokenConstraints {
 public:
  TokenConstraints() = default;
  // eos_ids: the model's end-of-sequence ids; vocab_size: the logits' width.
  TokenConstraints(const EngineRequest& req, const ReasoningOptions& reasoning,
                   const std::vector<int32_t>& eos_ids, int64_t vocab_size);

  // True when Prepare can ever fill anything: rows of other requests skip it.
  bool any() const { return any_; }
  // The limits on the next token, `num_output` tokens having been generated.
  void Prepare(int32_t num_output, LogitsConstraint* out);
  // Every generated token, in order.
  void Accept(int32_t token);

  bool thinking() const { return thinking_; }
  // Tokens of thought so far (forced ones included; "</think>" not).
  int32_t reasoning_tokens() const { return reasoning_tokens_; }
  // Sampled tokens the grammar refused (a sampler bug if ever > 0; logged by the caller).
  int32_t refused() const { return refused_; }

 private:
  void Ban(const std::vector<int32_t>& ids, LogitsConstraint* out) const;
  void StartAnswer();

  bool any_ = false;
  int64_t vocab_size_ = 0;
  std::shared_ptr<const grammar::CompiledGrammar> grammar_;
  std::unique_ptr<grammar::GrammarMatcher> matcher_;  // from the answer's first token
  std::vector<int32_t> eos_ids_;   // the model's: the grammar's end
  std::vector<int32_t> stop_ids_;  // the request's stop_token_ids
  std::vector<int32_t> end_ids_;   // what ends the sequence: eos (unless ignored) and stop ids
  std::vector<std::pair<int32_t, float>> bias_;
  int32_t min_tokens_ = 0;

  bool thinking_ = false;
  int32_t think_end_id_ = -1;
  int32_t budget_ = -1;           // -1: no limit
  std::vector<int32_t> forced_;   // the budget message then "</think>"
  bool forcing_ = false;
  size_t forced_next_ = 0;
  int32_t thought_ = 0;           // tokens the model chose while thinking
  int32_t reasoning_tokens_ = 0;
  int32_t refused_ = 0;
};

// True when the prompt leaves the model inside a thought: its last start_id comes after its
// last end_id (or there is no end_id). False when start_id is -1.
bool PromptOpensThought(const std::vector<int32_t>& prompt, int32_t start_id, int32_t end_id);

}  // namespace r1::engine
