#include "gateway/openai/response.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gateway/openai/cat.h"
#include "gateway/openai/redact.h"

namespace r1::gw {
namespace {

void AppendNumber(std::string* out, double v) {
  if (!std::isfinite(v)) {  // JSON has no infinities: -inf logprobs are written as -9999.0
    out->append(v < 0 ? "-9999.0" : "9999.0");
    return;
  }
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.9g", v);
  out->append(buf, n);
}

void AppendBytes(std::string* out, std::string_view s) {
  out->push_back('[');
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out->push_back(',');
    absl::StrAppend(out, static_cast<unsigned>(static_cast<unsigned char>(s[i])));
  }
  out->push_back(']');
}

void AppendNullable(std::string* out, std::string_view s) {
  if (s.empty()) out->append("null");
  else AppendJsonString(out, s);
}

void AppendHead(std::string* out, const ResponseMeta& meta, std::string_view object) {
  out->append("{\"id\":");
  AppendJsonString(out, meta.id);
  out->append(",\"object\":\"");
  out->append(object);
  out->append("\",\"created\":");
  absl::StrAppend(out, meta.created);
  out->append(",\"model\":");
  AppendJsonString(out, meta.model);
}

void AppendChatLogprobs(std::string* out, const std::vector<LogprobEntry>* lps) {
  if (!lps) {
    out->append("null");
    return;
  }
  out->append("{\"content\":[");
  for (size_t i = 0; i < lps->size(); ++i) {
    const LogprobEntry& e = (*lps)[i];
    if (i) out->push_back(',');
    out->append("{\"token\":");
    AppendJsonString(out, e.token);
    out->append(",\"logprob\":");
    AppendNumber(out, e.logprob);
    out->append(",\"bytes\":");
    AppendBytes(out, e.token);
    out->append(",\"top_logprobs\":[");
    for (size_t k = 0; k < e.top.size(); ++k) {
      if (k) out->push_back(',');
      out->append("{\"token\":");
      AppendJsonString(out, e.top[k].first);
      out->append(",\"logprob\":");
      AppendNumber(out, e.top[k].second);
      out->append(",\"bytes\":");
      AppendBytes(out, e.top[k].first);
      out->push_back('}');
    }
    out->append("]}");
  }
  out->append("]}");
}

void AppendCompletionLogprobs(std::string* out, const std::vector<LogprobEntry>* lps,
                              size_t offset) {
  if (!lps) {
    out->append("null");
    return;
  }
  std::string tokens, values, tops, offsets;
  for (size_t i = 0; i < lps->size(); ++i) {
    const LogprobEntry& e = (*lps)[i];
    const char* sep = i ? "," : "";
    tokens.append(sep);
    AppendJsonString(&tokens, e.token);
    values.append(sep);
    tops.append(sep);
    if (!e.has_logprob) {
      values.append("null");
      tops.append("null");
    } else {
      AppendNumber(&values, e.logprob);
      tops.push_back('{');
      for (size_t k = 0; k < e.top.size(); ++k) {
        if (k) tops.push_back(',');
        AppendJsonString(&tops, e.top[k].first);
        tops.push_back(':');
        AppendNumber(&tops, e.top[k].second);
      }
      tops.push_back('}');
    }
    offsets.append(sep);
    absl::StrAppend(&offsets, offset);
    offset += e.token.size();
  }
  absl::StrAppend(out, "{\"tokens\":[", tokens, "],\"token_logprobs\":[", values,
                  "],\"top_logprobs\":[", tops, "],\"text_offset\":[", offsets, "]}");
}

void AppendUsage(std::string* out, const UsageCounts& u) {
  absl::StrAppend(out, "{\"prompt_tokens\":", u.prompt_tokens,
                  ",\"completion_tokens\":", u.completion_tokens,
                  ",\"total_tokens\":", u.prompt_tokens + u.completion_tokens,
                  ",\"completion_tokens_details\":{\"reasoning_tokens\":", u.reasoning_tokens,
                  "}}");
}

}  // namespace

void AppendJsonString(std::string* out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out->reserve(out->size() + s.size() + 2);
  out->push_back('"');
  size_t run = 0;  // start of the current run of bytes that need no escaping
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default: {
        char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out->append(esc, 6);
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

std::string ErrorJson(std::string_view message, std::string_view type, std::string_view param,
                      std::string_view code) {
  std::string out = "{\"error\":{\"message\":";
  AppendJsonString(&out, RedactAddresses(message));
  out.append(",\"type\":");
  AppendJsonString(&out, type);
  out.append(",\"param\":");
  AppendNullable(&out, param);
  out.append(",\"code\":");
  AppendNullable(&out, code);
  out.append("}}");
  return out;
}

static void AppendToolCalls(std::string* out, const std::vector<ParsedToolCall>& calls,
                            bool streamed) {
  out->append("\"tool_calls\":[");
  for (size_t i = 0; i < calls.size(); ++i) {
    const ParsedToolCall& c = calls[i];
    if (i) out->push_back(',');
    out->push_back('{');
    if (streamed) absl::StrAppend(out, "\"index\":", c.index, ",");
    out->append("\"id\":");
    AppendJsonString(out, c.id);
    out->append(",\"type\":\"function\",\"function\":{\"name\":");
    AppendJsonString(out, c.name);
    out->append(",\"arguments\":");
    AppendJsonString(out, c.arguments);
    out->append("}}");
  }
  out->push_back(']');
}

std::string ChatChunk(const ResponseMeta& meta, int index, bool with_role, const SplitText& delta,
                      const std::vector<LogprobEntry>* lps, std::string_view finish_reason,
                      const std::vector<ParsedToolCall>* calls) {
  std::string out;
  out.reserve(192 + delta.content.size() + delta.reasoning.size());
  AppendHead(&out, meta, "chat.completion.chunk");
  absl::StrAppend(&out, ",\"choices\":[{\"index\":", index, ",\"delta\":{");
  bool first = true;
  auto sep = [&] {
    if (!first) out.push_back(',');
    first = false;
  };
  if (with_role) {
    sep();
    out.append("\"role\":\"assistant\"");
  }
  if (!delta.reasoning.empty()) {
    sep();
    out.append("\"reasoning_content\":");
    AppendJsonString(&out, delta.reasoning);
    out.append(",\"reasoning\":");
    AppendJsonString(&out, delta.reasoning);
  }
  if (!delta.content.empty() || (with_role && delta.reasoning.empty())) {
    sep();
    out.append("\"content\":");
    AppendJsonString(&out, delta.content);
  }
  if (calls && !calls->empty()) {
    sep();
    AppendToolCalls(&out, *calls, true);
  }
  out.append("},\"logprobs\":");
  AppendChatLogprobs(&out, lps);
  out.append(",\"finish_reason\":");
  AppendNullable(&out, finish_reason);
  out.append("}]");
  if (meta.include_usage) out.append(",\"usage\":null");
  out.push_back('}');
  return out;
}

std::string CompletionChunk(const ResponseMeta& meta, int index, std::string_view text,
                            const std::vector<LogprobEntry>* lps, size_t text_offset,
                            std::string_view finish_reason) {
  std::string out;
  out.reserve(160 + text.size());
  AppendHead(&out, meta, "text_completion");
  absl::StrAppend(&out, ",\"choices\":[{\"index\":", index, ",\"text\":");
  AppendJsonString(&out, text);
  out.append(",\"logprobs\":");
  AppendCompletionLogprobs(&out, lps, text_offset);
  out.append(",\"finish_reason\":");
  AppendNullable(&out, finish_reason);
  out.append("}]");
  if (meta.include_usage) out.append(",\"usage\":null");
  out.push_back('}');
  return out;
}

std::string UsageChunk(const ResponseMeta& meta, const UsageCounts& usage) {
  std::string out;
  AppendHead(&out, meta, meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion");
  out.append(",\"choices\":[],\"usage\":");
  AppendUsage(&out, usage);
  out.push_back('}');
  return out;
}

std::string ChatResponse(const ResponseMeta& meta, bool split,
                         const std::vector<ChoiceOutput>& choices, const UsageCounts& usage) {
  std::string out;
  AppendHead(&out, meta, "chat.completion");
  out.append(",\"choices\":[");
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    if (i) out.push_back(',');
    absl::StrAppend(&out, "{\"index\":", i, ",\"message\":{\"role\":\"assistant\",\"content\":");
    // As vLLM: with the split on (or tool calls) and no answer after the reasoning, content
    // is null.
    if ((split || !c.tool_calls.empty()) && c.content.empty()) out.append("null");
    else AppendJsonString(&out, c.content);
    if (split) {
      out.append(",\"reasoning_content\":");
      AppendNullable(&out, c.reasoning);
      out.append(",\"reasoning\":");
      AppendNullable(&out, c.reasoning);
    }
    if (!c.tool_calls.empty()) {
      out.push_back(',');
      AppendToolCalls(&out, c.tool_calls, false);
    }
    out.append("},\"logprobs\":");
    AppendChatLogprobs(&out, c.logprobs);
    out.append(",\"finish_reason\":");
    AppendNullable(&out, c.finish_reason);
    out.push_back('}');
  }
  out.append("],\"usage\":");
  AppendUsage(&out, usage);
  out.push_back('}');
  return out;
}

std::string CompletionResponse(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                               const UsageCounts& usage) {
  std::string out;
  AppendHead(&out, meta, "text_completion");
  out.append(",\"choices\":[");
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    if (i) out.push_back(',');
    absl::StrAppend(&out, "{\"index\":", i, ",\"text\":");
    AppendJsonString(&out, c.content);
    out.append(",\"logprobs\":");
    AppendCompletionLogprobs(&out, c.logprobs, 0);
    out.append(",\"finish_reason\":");
    AppendNullable(&out, c.finish_reason);
    out.push_back('}');
  }
  out.append("],\"usage\":");
  AppendUsage(&out, usage);
  out.push_back('}');
  return out;
}

std::string ModelJson(const ModelCard& m, int64_t created) {
  std::string out = "{\"id\":";
  AppendJsonString(&out, m.id);
  absl::StrAppend(&out, ",\"object\":\"model\",\"created\":", created,
                  ",\"owned_by\":\"r1serve\",\"root\":");
  AppendJsonString(&out, m.id);
  absl::StrAppend(&out, ",\"parent\":null,\"max_model_len\":", m.max_model_len);
  out.append(",\"generation_defaults\":");
  out.append(m.generation_defaults_json.empty() ? "null" : m.generation_defaults_json);
  out.append(",\"chat_template\":");
  AppendNullable(&out, m.chat_template);
  absl::StrAppend(&out, ",\"tools\":", m.tools ? "true" : "false", "}");
  return out;
}

std::string ModelsResponse(const std::vector<ModelCard>& models, int64_t created) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < models.size(); ++i) {
    if (i) out.push_back(',');
    out.append(ModelJson(models[i], created));
  }
  out.append("]}");
  return out;
}

std::string SseData(std::string_view json) { return Cat("data: ", json, "\n\n"); }

}  // namespace r1::gw
