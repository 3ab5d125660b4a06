#include "worker/tokenizer/chat_template.h"

#include <cstdio>
#include <string_view>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"

namespace r1::tokenizer {

// Verbatim from the model's tokenizer_config.json (JSON-unescaped).
const char kDeepSeekR1TemplateText[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    "{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
    "{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + "
    "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + "
    "message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}"
    "{% endif %}{% if add_generation_prompt and not ns.is_tool %}"
    "{{'<｜Assistant｜><think>\\n'}}{% endif %}";

const char kChatMLTemplateText[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

namespace {

constexpr const char* kFlagHelp = "pass --chat-template deepseek-r1 or --chat-template chatml";

std::string RenderDeepSeek(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = "<｜begin▁of▁sentence｜>";
  const std::string* system = nullptr;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") system = &m.content;  // the last one wins, as in the template
  }
  if (system) out += *system;
  // ns.is_first of the template: set by the first tool call and never reset, so later calls
  // (in this or any later turn) render as continuations, exactly as transformers renders it.
  bool is_tool = false, is_output_first = true, is_first_call = false;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      is_tool = false;
      out += "<｜User｜>";
      out += m.content;
    } else if (m.role == "assistant" && !m.has_content) {
      is_tool = false;
      for (const ChatToolCall& c : m.tool_calls) {
        const std::string call = absl::StrCat(c.type, "<｜tool▁sep｜>", c.name, "\n```json\n",
                                              c.arguments, "\n```<｜tool▁call▁end｜>");
        if (!is_first_call) {
          absl::StrAppend(&out, "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>", call);
          is_first_call = true;
        } else {
          absl::StrAppend(&out, "\n<｜tool▁call▁begin｜>", call,
                          "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
        }
      }
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>";
        out += m.content;
        out += "<｜end▁of▁sentence｜>";
        is_tool = false;
      } else {
        std::string_view content = m.content;
        if (size_t p = content.rfind("</think>"); p != std::string_view::npos) {
          content = content.substr(p + 8);
        }
        out += "<｜Assistant｜>";
        out += content;
        out += "<｜end▁of▁sentence｜>";
      }
    } else if (m.role == "tool") {
      is_tool = true;
      if (is_output_first) {
        out += "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>";
        is_output_first = false;
      } else {
        out += "\n<｜tool▁output▁begin｜>";
      }
      out += m.content;
      out += "<｜tool▁output▁end｜>";
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (add_generation_prompt && !is_tool) out += "<｜Assistant｜><think>\n";
  return out;
}

std::string RenderChatML(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

const char* ChatTemplateName(ChatTemplate t) {
  return t == ChatTemplate::kDeepSeekR1 ? "deepseek-r1" : "chatml";
}

absl::StatusOr<ChatTemplate> RecognizeChatTemplate(const std::string& text) {
  if (text == kDeepSeekR1TemplateText) return ChatTemplate::kDeepSeekR1;
  if (text == kChatMLTemplateText) return ChatTemplate::kChatML;
  // The same families in other revisions (the older DeepSeek-R1 one without "<think>\n" in the
  // generation prompt, Qwen's ChatML templates with extras).
  if (text.find("<｜User｜>") != std::string::npos &&
      text.find("<｜Assistant｜>") != std::string::npos) {
    return ChatTemplate::kDeepSeekR1;
  }
  if (text.find("<|im_start|>") != std::string::npos &&
      text.find("<|im_end|>") != std::string::npos) {
    return ChatTemplate::kChatML;
  }
  return absl::NotFoundError("the chat_template is neither DeepSeek-R1's nor ChatML");
}

absl::StatusOr<ChatTemplate> ResolveChatTemplate(const std::string& flag_value,
                                                 const std::string& model_dir) {
  if (flag_value == "deepseek-r1") return ChatTemplate::kDeepSeekR1;
  if (flag_value == "chatml") return ChatTemplate::kChatML;
  if (flag_value != "auto") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--chat-template must be auto, deepseek-r1 or chatml, not '", flag_value, "'"));
  }
  const std::string path = model_dir + "/tokenizer_config.json";
  std::string data;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
    std::fclose(f);
  } else {
    return absl::NotFoundError(absl::StrCat("--chat-template auto: cannot read ", path,
                                            " to recognise the chat template; ", kFlagHelp));
  }
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(data, ec);
  if (ec || !v.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("--chat-template auto: ", path,
                                                   " is not a JSON object; ", kFlagHelp));
  }
  const boost::json::value* t = v.as_object().if_contains("chat_template");
  std::string text;
  if (t && t->is_string()) {
    text = std::string(t->as_string());
  } else if (t && t->is_array()) {
    // Named templates: [{"name": "default", "template": "..."}, ...]
    for (const auto& e : t->as_array()) {
      if (!e.is_object()) continue;
      const auto* name = e.as_object().if_contains("name");
      const auto* tmpl = e.as_object().if_contains("template");
      if (name && name->is_string() && name->as_string() == "default" && tmpl &&
          tmpl->is_string()) {
        text = std::string(tmpl->as_string());
      }
    }
  }
  if (text.empty()) {
    return absl::NotFoundError(absl::StrCat("--chat-template auto: ", path,
                                            " has no chat_template; ", kFlagHelp));
  }
  auto r = RecognizeChatTemplate(text);
  if (!r.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--chat-template auto: the chat_template in ", path,
        " is not one r1serve knows (DeepSeek-R1-Distill or ChatML); ", kFlagHelp));
  }
  return *r;
}

bool SupportsTools(ChatTemplate t) { return t == ChatTemplate::kDeepSeekR1; }

absl::StatusOr<std::string> RenderChat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const std::string& tools_json) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, " has role '", r, "'; roles are system, user, assistant and tool"));
    }
    // Templates without a tool-call section concatenate content: None breaks them (a
    // TypeError in transformers).
    if (!messages[i].has_content && !SupportsTools(t)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, " has no content; the ", ChatTemplateName(t),
          " chat template needs content (it has no tool-call section)"));
    }
  }
  if (!tools_json.empty() && !SupportsTools(t)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tools: the ", ChatTemplateName(t), " chat template has no tool support"));
  }
  if (t == ChatTemplate::kDeepSeekR1) return RenderDeepSeek(messages, add_generation_prompt);
  return RenderChatML(messages, add_generation_prompt);
}

}  // namespace r1::tokenizer
