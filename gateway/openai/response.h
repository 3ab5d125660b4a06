// Builds OpenAI response bodies, streamed chunks and error bodies as JSON text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/openai/reasoning.h"
#include "gateway/openai/request.h"
#include "gateway/openai/tool_parser.h"

namespace r1::gw {

// Appends `s` as a JSON string literal (quotes included).
void AppendJsonString(std::string* out, std::string_view s);

// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}; empty param or code
// are written as null. Network addresses in the message are redacted (redact.h): every error
// body the gateway sends is built here.
std::string ErrorJson(std::string_view message, std::string_view type, std::string_view param,
                      std::string_view code);

struct LogprobEntry {
  std::string token;
  double logprob = 0;
  std::vector<std::pair<std::string, double>> top;
  bool has_logprob = true;  // false: the echoed prompt's first token (null in the response)
};

// What every chunk and response of one request shares.
struct ResponseMeta {
  ApiKind kind = ApiKind::kChat;
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
  bool include_usage = false;  // streaming: every chunk carries "usage": null, then a usage chunk
};

struct UsageCounts {
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;
  uint32_t reasoning_tokens = 0;  // of completion_tokens: completion_tokens_details
};

// One streamed chunk of choice `index` of a chat completion. `role` is set on the choice's
// first chunk only; an empty finish_reason is written as null. `lps` and `calls` may be null.
// Reasoning is written twice, as reasoning_content and as reasoning (vLLM's name since
// v0.11.2): clients read one or the other.
std::string ChatChunk(const ResponseMeta& meta, int index, bool with_role, const SplitText& delta,
                      const std::vector<LogprobEntry>* lps, std::string_view finish_reason,
                      const std::vector<ParsedToolCall>* calls = nullptr);
// One streamed chunk of a text completion; text_offset is where `text` starts in the output.
std::string CompletionChunk(const ResponseMeta& meta, int index, std::string_view text,
                            const std::vector<LogprobEntry>* lps, size_t text_offset,
                            std::string_view finish_reason);
// The last chunk when include_usage was asked for: "choices": [] and the usage.
std::string UsageChunk(const ResponseMeta& meta, const UsageCounts& usage);

// One choice of a whole (non-streamed) response.
struct ChoiceOutput {
  std::string reasoning;  // chat with the split on
  std::string content;    // chat message content, or the completion text
  const std::vector<LogprobEntry>* logprobs = nullptr;  // null: "logprobs": null
  std::string finish_reason;
  std::vector<ParsedToolCall> tool_calls;  // chat
};

// Whole (non-streamed) responses, choices in index order. For chat, reasoning is written as
// reasoning_content and reasoning when split is on (null when there was none).
std::string ChatResponse(const ResponseMeta& meta, bool split,
                         const std::vector<ChoiceOutput>& choices, const UsageCounts& usage);
std::string CompletionResponse(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                               const UsageCounts& usage);

// One served model as /v1/models shows it.
struct ModelCard {
  std::string id;
  uint32_t max_model_len = 0;
  std::string generation_defaults_json;  // {"source": ..., "temperature": ...}; "" for none
  std::string chat_template;
  bool tools = false;
};
// GET /v1/models, and one entry of it (GET /v1/models/{id}).
std::string ModelsResponse(const std::vector<ModelCard>& models, int64_t created);
std::string ModelJson(const ModelCard& model, int64_t created);

// "data: <json>\n\n".
std::string SseData(std::string_view json);

}  // namespace r1::gw
