// GenerateRequest -> EngineRequest: every field checked, errors are INVALID_ARGUMENT naming the
// field. No gRPC calls here, only the generated message types.
#pragma once

#include "common/status.h"
#include "r1serve/v1/inference.pb.h"
#include "worker/engine/engine.h"
#include "worker/service/generation_defaults.h"
#include "worker/service/prompt_codec.h"

namespace r1::grammar {
class GrammarCompiler;
}

namespace r1::service {

struct RequestLimits {
  int32_t max_model_len = 0;
  int32_t vocab_size = 0;
  grammar::GrammarCompiler* compiler = nullptr;  // null: structured outputs are refused
  // For sampling fields a request leaves unset, before the request's own `defaults`.
  GenerationDefaults generation;
};

// A chat prompt rendered and tokenized (Generate and Tokenize share it).
absl::StatusOr<std::vector<int32_t>> EncodeChatPrompt(const r1serve::v1::ChatPrompt& chat,
                                                      PromptCodec* codec);

// Most choices one Generate call may ask for (GenerateRequest.n), as the gateway's n.
inline constexpr uint32_t kMaxChoices = 64;

// The number of choices GenerateRequest.n asks for (0 means 1): INVALID_ARGUMENT naming "n"
// above kMaxChoices or together with `resume`.
absl::StatusOr<int> ChoiceCount(const r1serve::v1::GenerateRequest& req);

// Choice k of n from the request `base` (ToEngineRequest's): seed + k when it has a seed (the
// rule the gateway used when it sent one call per choice), request id "<id>-<k>" when n > 1,
// and the prompt's log-probabilities asked for on choice 0 only (they are sent once).
engine::EngineRequest ForChoice(const engine::EngineRequest& base, int k, int n);

// Fills everything but arrival and sink. `codec` may be null (no tokenizer).
absl::StatusOr<engine::EngineRequest> ToEngineRequest(const r1serve::v1::GenerateRequest& req,
                                                      const RequestLimits& limits,
                                                      PromptCodec* codec);

}  // namespace r1::service
