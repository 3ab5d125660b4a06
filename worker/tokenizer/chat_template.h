// Chat templates, rendered in C++ to exactly what transformers' apply_chat_template gives
// for the two template families r1serve knows:
//   kDeepSeekR1: DeepSeek-R1-Distill's template (BOS, system text, <｜User｜>, <｜Assistant｜>,
//                earlier assistant turns cut to the part after </think>, tool outputs,
//                generation prompt "<｜Assistant｜><think>\n").
//   kChatML:     Qwen ChatML, "<|im_start|>role\ncontent<|im_end|>\n" per message and
//                "<|im_start|>assistant\n" as generation prompt.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace r1::tokenizer {

enum class ChatTemplate { kDeepSeekR1, kChatML };

// A call in an assistant turn (OpenAI's tool_calls entry; arguments as JSON text).
struct ChatToolCall {
  std::string type = "function";
  std::string name, arguments;
};

struct ChatMessage {
  std::string role, content;
  bool has_content = true;  // false: content None (an assistant turn that only calls tools)
  std::vector<ChatToolCall> tool_calls;
};

// flag_value: "auto" | "deepseek-r1" | "chatml". "auto" reads model_dir/tokenizer_config.json
// and recognises its chat_template; an unknown or missing template is an error that names the
// --chat-template flag.
absl::StatusOr<ChatTemplate> ResolveChatTemplate(const std::string& flag_value,
                                                 const std::string& model_dir);

// Recognises a chat_template text (the "auto" rule); NotFound when it is neither family.
absl::StatusOr<ChatTemplate> RecognizeChatTemplate(const std::string& template_text);

// Roles: system, user, assistant, tool. Any other role is InvalidArgument. `tools_json` (the
// request's tools array, "" for none) is given to the template as `tools`: DeepSeek-R1's
// template renders the calls and outputs of the conversation but not the tool list (as
// transformers renders it); ChatML has no tool support (InvalidArgument naming "tools").
absl::StatusOr<std::string> RenderChat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt,
                                       const std::string& tools_json = "");

// True when the template renders tool calls and tool outputs.
bool SupportsTools(ChatTemplate t);

const char* ChatTemplateName(ChatTemplate t);

// The chat_template text of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B's tokenizer_config.json
// (the revision whose generation prompt opens <think>), and a plain ChatML template.
extern const char kDeepSeekR1TemplateText[];
extern const char kChatMLTemplateText[];

}  // namespace r1::tokenizer
