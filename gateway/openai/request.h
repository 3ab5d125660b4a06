// Parsing and validation of OpenAI request bodies (Boost.JSON).
//
// A bad request gives an InvalidArgument status whose message is shown to the client and
// whose "param" payload (see ParamOf) names the offending parameter, as OpenAI does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "common/sampling.h"
#include "common/status.h"

namespace r1::gw {

enum class ApiKind { kChat, kCompletion };

// One completion prompt: text, or token ids.
struct Prompt {
  std::optional<std::string> text;
  std::vector<int32_t> ids;
};

// Most choices (prompts times n) one request may ask for.
inline constexpr uint32_t kMaxChoices = 64;

// A function call in an assistant turn (OpenAI's tool_calls entry).
struct ToolCallIn {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct ChatTurn {
  std::string role;  // system (developer), user, assistant or tool
  std::string content;
  bool has_content = true;  // false: an assistant turn with content null (tool calls only)
  std::vector<ToolCallIn> tool_calls;
  std::string tool_call_id;  // role tool
  std::string name;
};

// tool_choice: none, auto (the default with tools), required, or one named function.
enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

// A format the answer must follow (issue 14), as the worker's StructuredOutput carries it.
struct StructuredOutput {
  enum class Kind { kNone, kResponseFormat, kJsonSchema, kChoice, kRegex };
  Kind kind = Kind::kNone;
  std::string text;  // kResponseFormat, kJsonSchema: JSON text; kRegex: the pattern
  std::vector<std::string> choices;  // kChoice
  std::string param;  // the request field it came from, named in the worker's errors
};

// One validated generation request, independent of gRPC and protobuf.
struct GenParams {
  ApiKind kind = ApiKind::kChat;
  std::string model;
  std::vector<ChatTurn> messages;     // chat
  std::vector<Prompt> prompts;        // completion: one or more prompts
  bool stream = false;
  bool include_usage = false;
  uint32_t max_tokens = 0;  // 0: up to the model's limit
  // OpenAI's default temperature is 1. With a seed, choice k of a prompt samples with seed + k.
  SamplingOptions sampling = [] {
    SamplingOptions s;
    s.temperature = 1.f;
    return s;
  }();
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  uint32_t n = 1;  // choices per prompt
  std::string user;
  // Which of temperature, top_p and top_k the request gave: the others take the checkpoint's
  // defaults (generation_config.json), then OpenAI's.
  bool temperature_set = false, top_p_set = false, top_k_set = false;
  bool echo = false;  // completions: the prompt comes first in the text (and its logprobs)
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  bool include_reasoning = true;  // false: the reasoning is left out of the response
  std::string tools_json;         // chat: the "tools" array as JSON text, "" without tools
  std::vector<std::string> tool_names;
  ToolChoice tool_choice = ToolChoice::kNone;
  std::string tool_choice_name;   // kNamed
  bool parallel_tool_calls = true;
  std::vector<std::string> ignored_fields;  // unknown fields, with --ignore-unknown-fields
  // Output constraints (output_request.h).
  StructuredOutput structured;
  std::vector<std::pair<int32_t, float>> logit_bias;
  uint32_t min_tokens = 0;
  std::optional<int32_t> thinking_token_budget;  // -1: no limit; unset: the worker's default
};

struct ParseOptions {
  bool ignore_unknown_fields = false;  // else an unknown field is a 400
};

// Parses the body of POST /v1/chat/completions or POST /v1/completions.
absl::StatusOr<GenParams> ParseGenRequest(ApiKind kind, std::string_view body,
                                          const ParseOptions& options = {});

// The "messages" of a chat body (for /tokenize, which renders them as a chat request would).
absl::Status ParseChatMessages(const boost::json::object& body, GenParams* p);

// An InvalidArgument status naming `param`.
absl::Status InvalidParam(std::string_view param, std::string_view message);
// The parameter named by a status made with InvalidParam, or "" when none.
std::string ParamOf(const absl::Status& status);

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates).
bool IsValidUtf8(std::string_view s);

}  // namespace r1::gw
