// POST /tokenize and POST /detokenize in vLLM's shape. /tokenize takes {"prompt": text} or
// {"messages": [...], "tools": [...]} (rendered with the worker's chat template, generation
// prompt included, as a chat request would be) and answers {"count", "max_model_len",
// "tokens", "token_strs"}; /detokenize takes {"tokens": [ids]} and answers {"prompt": text}.
// "model" is optional: given, it must be served (404 otherwise) and picks the worker.
#pragma once

#include <memory>

#include "gateway/http/session.h"
#include "gateway/main/gateway.h"

namespace r1::gw {

void HandleTokenize(GatewayContext* ctx, const std::shared_ptr<http::Session>& session,
                    http::Request&& request, bool detokenize);

}  // namespace r1::gw
