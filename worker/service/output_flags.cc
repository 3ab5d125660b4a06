#include "worker/service/output_flags.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "worker/grammar/token_vocabulary.h"
#include "worker/tokenizer/tokenizer.h"

namespace r1::service {

OutputFlags AddOutputFlags(Flags& flags) {
  OutputFlags f;
  f.grammar = grammar::AddGrammarFlags(flags);
  f.thinking_token_budget = flags.Int(
      "thinking-token-budget", -1,
      "tokens of thought (after the prompt's <think>) before the worker writes "
      "--thinking-budget-message and </think> itself; -1: no limit. A request's "
      "thinking_token_budget overrides it");
  f.thinking_budget_message = flags.String(
      "thinking-budget-message", "",
      "text forced before </think> when a thinking budget runs out (part of the thought)");
  return f;
}

absl::StatusOr<engine::ReasoningOptions> ReasoningFromFlags(const OutputFlags& f,
                                                            PromptCodec* codec) {
  engine::ReasoningOptions r;
  if (*f.thinking_token_budget < -1 || *f.thinking_token_budget > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--thinking-token-budget must be -1 (no limit) or in [0, 2^31), got ",
        *f.thinking_token_budget));
  }
  r.default_budget = static_cast<int32_t>(*f.thinking_token_budget);
  if (!codec || !codec->tokenizer()) return r;
  const tokenizer::Tokenizer& tok = *codec->tokenizer();
  r.think_start_id = tok.TokenToId("<think>").value_or(-1);
  r.think_end_id = tok.TokenToId("</think>").value_or(-1);
  if (r.think_start_id < 0 || r.think_end_id < 0) {
    r.think_start_id = r.think_end_id = -1;
    R1_LOG(INFO) << "the tokenizer has no <think> and </think> tokens: structured outputs "
                    "apply from the first token, and thinking budgets to nothing";
    return r;
  }
  auto message = tok.Encode(*f.thinking_budget_message);
  if (!message.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--thinking-budget-message: ", message.status().message()));
  }
  r.budget_message = std::move(*message);
  return r;
}

absl::StatusOr<std::unique_ptr<grammar::GrammarCompiler>> CompilerFromFlags(
    const OutputFlags& f, PromptCodec* codec, int64_t vocab_size) {
  R1_ASSIGN_OR_RETURN(grammar::CompilerOptions options,
                      grammar::CompilerOptionsFromFlags(f.grammar));
  if (!codec || !codec->tokenizer()) return std::unique_ptr<grammar::GrammarCompiler>();
  R1_ASSIGN_OR_RETURN(std::shared_ptr<const grammar::TokenVocabulary> vocab,
                      grammar::TokenVocabulary::FromTokenizer(*codec->tokenizer(), vocab_size));
  R1_LOG(INFO) << "structured outputs: " << vocab->num_grammar_tokens()
               << " grammar tokens of " << vocab_size;
  return std::make_unique<grammar::GrammarCompiler>(std::move(vocab), options);
}

}  // namespace r1::service
