#include "worker/engine/token_constraints.h"

#include <algorithm>
#include <limits>

#include "worker/grammar/bitmask.h"

namespace r1::engine {

bool PromptOpensThought(const std::vector<int32_t>& prompt, int32_t start_id, int32_t end_id) {
  if (start_id < 0) return false;
  for (size_t i = prompt.size(); i-- > 0;) {
    if (prompt[i] == start_id) return true;
    if (prompt[i] == end_id) return false;
  }
  return false;
}

TokenConstraints::TokenConstraints(const EngineRequest& req, const ReasoningOptions& reasoning,
                                   const std::vector<int32_t>& eos_ids, int64_t vocab_size)
    : vocab_size_(vocab_size),
      grammar_(req.grammar),
      bias_(req.logit_bias),
      min_tokens_(req.min_tokens) {
  eos_ids_ = eos_ids;
  stop_ids_ = req.stop_token_ids;
  if (!req.ignore_eos) end_ids_ = eos_ids;
  end_ids_.insert(end_ids_.end(), stop_ids_.begin(), stop_ids_.end());
  thinking_ = reasoning.think_end_id >= 0 &&
              PromptOpensThought(req.prompt, reasoning.think_start_id, reasoning.think_end_id);
  if (thinking_) {
    think_end_id_ = reasoning.think_end_id;
    budget_ = req.thinking_token_budget ? *req.thinking_token_budget : reasoning.default_budget;
    if (budget_ >= 0) {
      forced_ = reasoning.budget_message;
      forced_.push_back(think_end_id_);
    }
  } else {
    StartAnswer();
  }
  any_ = grammar_ || !bias_.empty() || min_tokens_ > 0 || budget_ >= 0;
}

void TokenConstraints::StartAnswer() {
  thinking_ = false;
  if (grammar_) matcher_ = std::make_unique<grammar::GrammarMatcher>(grammar_, eos_ids_);
}

void TokenConstraints::Ban(const std::vector<int32_t>& ids, LogitsConstraint* out) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) continue;
    if (!out->allowed.empty()) grammar::ClearBit(out->allowed.data(), id);
    else out->bias.emplace_back(id, -std::numeric_limits<float>::infinity());
  }
}

void TokenConstraints::Prepare(int32_t num_output, LogitsConstraint* out) {
  out->Clear();
  if (!any_) return;
  if (thinking_) {
    if (!forcing_ && budget_ >= 0 && thought_ >= budget_) forcing_ = true;
    if (forcing_ && forced_next_ < forced_.size()) {
      // The budget is spent: the next forced token is the only one allowed.
      out->allowed.assign(grammar::BitmaskWords(vocab_size_), 0u);
      grammar::SetBit(out->allowed.data(), forced_[forced_next_]);
      return;
    }
    out->bias = bias_;
    if (grammar_ || num_output < min_tokens_) Ban(end_ids_, out);
    return;
  }
  out->bias = bias_;
  if (matcher_) {
    out->allowed.resize(std::max(matcher_->bitmask_words(), grammar::BitmaskWords(vocab_size_)));
    std::fill(out->allowed.begin() + static_cast<long>(matcher_->bitmask_words()),
              out->allowed.end(), 0u);
    matcher_->FillNextTokenBitmask(out->allowed.data());
    // A stop id ends the sequence (its text unsent) like end-of-sequence: only once the
    // answer is complete, even when the grammar could read it as text.
    for (int32_t id : stop_ids_) {
      if (id < 0 || id >= vocab_size_) continue;
      if (matcher_->IsComplete()) grammar::SetBit(out->allowed.data(), id);
      else grammar::ClearBit(out->allowed.data(), id);
    }
    // A complete answer that cannot go on ends, min_tokens or not.
    if (num_output < min_tokens_ && matcher_->CanContinue()) Ban(end_ids_, out);
    return;
  }
  if (num_output < min_tokens_) Ban(end_ids_, out);
}

void TokenConstraints::Accept(int32_t token) {
  if (thinking_) {
    if (forcing_ && forced_next_ < forced_.size() && token == forced_[forced_next_]) {
      ++forced_next_;
    } else {
      ++thought_;
    }
    if (token == think_end_id_) {
      StartAnswer();
    } else {
      ++reasoning_tokens_;
    }
    return;
  }
  if (matcher_ && !matcher_->AcceptToken(token)) ++refused_;
}

}  // namespace r1::engine
