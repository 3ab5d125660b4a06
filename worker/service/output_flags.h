// r1-worker's flags for output constraints: the structured-output grammar engine's
// (--grammar-*) and the thinking budget's (--thinking-*), and what they build at start: the
// thought's token ids and budget message for the engine, and the grammar compiler (its
// vocabulary prepared once from the tokenizer) for the request path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/flags.h"
#include "common/status.h"
#include "worker/engine/engine.h"
#include "worker/grammar/compiler.h"
#include "worker/grammar/grammar_flags.h"
#include "worker/service/prompt_codec.h"

namespace r1::service {

struct OutputFlags {
  grammar::GrammarFlags grammar;
  int64_t* thinking_token_budget;
  std::string* thinking_budget_message;
};

OutputFlags AddOutputFlags(Flags& flags);

// The thought's tokens and the budget from the flags; codec may be null (no tokenizer: no
// thought is tracked). InvalidArgument naming the flag.
absl::StatusOr<engine::ReasoningOptions> ReasoningFromFlags(const OutputFlags& f,
                                                            PromptCodec* codec);

// The grammar compiler over the tokenizer's vocabulary padded to the model's vocab_size;
// null when there is no tokenizer. Checks the --grammar-* flags.
absl::StatusOr<std::unique_ptr<grammar::GrammarCompiler>> CompilerFromFlags(
    const OutputFlags& f, PromptCodec* codec, int64_t vocab_size);

}  // namespace r1::service
