// The output constraints of a GenerateRequest (fields 20-29: structured_output, logit_bias,
// min_tokens, thinking_token_budget), checked and put into the EngineRequest; the structured
// output is compiled here, on the request's path (a cache hit is a hash lookup), so that a
// schema the engine cannot enforce is INVALID_ARGUMENT before the request queues. No gRPC
// calls here, only the generated message types.
#pragma once

#include "common/status.h"
#include "r1serve/v1/inference.pb.h"
#include "worker/engine/engine.h"

namespace r1::grammar {
class GrammarCompiler;
}

namespace r1::service {

// `compiler` may be null (no tokenizer): a structured output is then refused. `out` already
// holds the request's other fields (max_tokens, ignore_eos).
absl::Status ConstraintsFromProto(const r1serve::v1::GenerateRequest& req, int32_t vocab_size,
                                  int32_t max_model_len, grammar::GrammarCompiler* compiler,
                                  engine::EngineRequest* out);

}  // namespace r1::service
