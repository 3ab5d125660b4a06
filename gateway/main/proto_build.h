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

// The Generate request of choice `k` (of n) for prompt `prompt` (completions) or the chat.
void BuildGenerateRequest(const GenParams& p, size_t prompt, uint32_t k, const std::string& id,
                          r1serve::v1::GenerateRequest* r);

}  // namespace r1::gw
