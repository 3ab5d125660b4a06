// GenParams -> the worker's proto messages: the one place the gateway's parsed request
// becomes a GenerateRequest (or the chat part of a TokenizeRequest).
#pragma once

#include <cstdint>
#include <string>

#include "gateway/openai/request.h"
#include "r1serve/v1/inference.pb.h"

namespace r1::gw {

// The messages and tools of a chat request.
void FillChatPrompt(const GenParams& p, r1serve::v1::ChatPrompt* chat);

// The Generate request of prompt `prompt` (completions) or the chat: one call for its n
// choices (GenerateRequest.n, set when n > 1). Its request id is `id`, or "<id>-<prompt>"
// when a completions request has several prompts.
void BuildGenerateRequest(const GenParams& p, size_t prompt, const std::string& id,
                          r1serve::v1::GenerateRequest* r);

// Choice k of the call `call` as a call of its own (one choice: a resumed stream, or a choice
// tried again alone), as the worker runs it within the call: seed + k, request id "<id>-<k>"
// when the call has several choices.
void ChoiceRequest(const r1serve::v1::GenerateRequest& call, uint32_t k,
                   r1serve::v1::GenerateRequest* r);

}  // namespace r1::gw
