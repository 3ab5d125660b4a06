#include "gateway/openai/request.h"

#include <cmath>
#include <limits>

#include <boost/json.hpp>

#include "absl/strings/cord.h"
#include "gateway/openai/cat.h"
#include "gateway/openai/fields.h"
#include "gateway/openai/json_get.h"
#include "gateway/openai/output_request.h"
#include "gateway/openai/tool_request.h"

namespace r1::gw {
namespace json = boost::json;

namespace {
constexpr char kParamPayload[] = "r1.param";
constexpr size_t kMaxStops = 16;
constexpr size_t kMaxStopBytes = 256;

absl::Status GetIdList(const json::value& v, std::string_view name, std::vector<int32_t>* out) {
  if (!v.is_array()) return InvalidParam(name, Cat("'", name, "' must be an array"));
  for (const json::value& e : v.get_array()) {
    int64_t id = 0;
    R1_RETURN_IF_ERROR(AsInt(e, name, &id));
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      return InvalidParam(name, Cat("'", name, "' holds an out-of-range token id"));
    out->push_back(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

// An assistant turn's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}].
absl::Status ParseToolCalls(const json::value& v, const std::string& where, ChatTurn* turn) {
  const std::string field = where + ".tool_calls";
  if (!v.is_array()) return InvalidParam(field, Cat("'", field, "' must be an array"));
  for (size_t i = 0; i < v.get_array().size(); ++i) {
    const std::string at = Cat(field, "[", i, "]");
    const json::object* c = v.get_array()[i].if_object();
    const json::value* fn = c ? Field(*c, "function") : nullptr;
    const json::value* name = fn && fn->is_object() ? Field(fn->get_object(), "name") : nullptr;
    const json::value* args =
        fn && fn->is_object() ? Field(fn->get_object(), "arguments") : nullptr;
    const json::value* id = c ? Field(*c, "id") : nullptr;
    const json::value* type = c ? Field(*c, "type") : nullptr;
    if (!name || !name->is_string() || !args || !args->is_string() || (id && !id->is_string()) ||
        (type && (!type->is_string() || type->get_string() != "function")))
      return InvalidParam(at, Cat("'", at, "' must be {\"id\": string, \"type\": \"function\", "
                                  "\"function\": {\"name\": string, \"arguments\": string}}"));
    turn->tool_calls.push_back({id ? std::string(id->get_string()) : std::string(),
                                std::string(name->get_string()), std::string(args->get_string())});
  }
  return absl::OkStatus();
}

absl::Status ParseMessages(const json::object& o, GenParams* p) {
  const json::value* v = Field(o, "messages");
  if (!v) return InvalidParam("messages", "'messages' is a required property");
  if (!v->is_array()) return InvalidParam("messages", "'messages' must be an array");
  const json::array& arr = v->get_array();
  if (arr.empty()) return InvalidParam("messages", "'messages' must not be empty");
  for (size_t i = 0; i < arr.size(); ++i) {
    std::string where = Cat("messages[", i, "]");
    if (!arr[i].is_object()) return InvalidParam(where, Cat("'", where, "' must be an object"));
    const json::object& m = arr[i].get_object();
    for (const auto& kv : m) {
      std::string_view k(kv.key().data(), kv.key().size());
      // reasoning_content / reasoning of earlier assistant turns: the templates drop the
      // reasoning of past turns, so they change nothing; refusal is OpenAI's null echo.
      if (k != "role" && k != "content" && k != "name" && k != "tool_calls" &&
          k != "tool_call_id" && k != "reasoning_content" && k != "reasoning" && k != "refusal")
        return InvalidParam(Cat(where, ".", k),
                            Cat("Unrecognized request argument supplied: ", where, ".", k));
    }
    const json::value* role = Field(m, "role");
    if (!role || !role->is_string())
      return InvalidParam(where + ".role", Cat("'", where, ".role' must be a string"));
    std::string_view r = role->get_string();
    if (r != "system" && r != "user" && r != "assistant" && r != "developer" && r != "tool")
      return InvalidParam(where + ".role",
                          Cat("'", where,
                                       ".role' must be one of system, developer, user, assistant, tool"));
    ChatTurn turn;
    turn.role = r == "developer" ? "system" : std::string(r);
    if (const json::value* name = Field(m, "name")) {
      if (!name->is_string())
        return InvalidParam(where + ".name", Cat("'", where, ".name' must be a string"));
      turn.name = std::string(name->get_string());
    }
    if (const json::value* calls = Field(m, "tool_calls")) {
      if (r != "assistant")
        return InvalidParam(where + ".tool_calls",
                            Cat("'", where, ".tool_calls' is allowed on assistant messages only"));
      R1_RETURN_IF_ERROR(ParseToolCalls(*calls, where, &turn));
    }
    if (const json::value* id = Field(m, "tool_call_id")) {
      if (!id->is_string())
        return InvalidParam(where + ".tool_call_id",
                            Cat("'", where, ".tool_call_id' must be a string"));
      turn.tool_call_id = std::string(id->get_string());
    }
    const json::value* c = Field(m, "content");
    if (!c) {
      if (r != "assistant")
        return InvalidParam(where + ".content", Cat("'", where, ".content' is required"));
      turn.has_content = false;
    } else if (c->is_string()) {
      turn.content = std::string(c->get_string());
    } else if (c->is_array()) {
      for (const json::value& part : c->get_array()) {
        const json::object* po = part.if_object();
        const json::value* type = po ? Field(*po, "type") : nullptr;
        const json::value* text = po ? Field(*po, "text") : nullptr;
        if (!type || !type->is_string() || type->get_string() != "text" || !text ||
            !text->is_string())
          return InvalidParam(where + ".content",
                              Cat("'", where,
                                           ".content' parts must be {\"type\": \"text\", "
                                           "\"text\": string}"));
        turn.content += std::string(text->get_string());
      }
    } else {
      return InvalidParam(where + ".content",
                          Cat("'", where, ".content' must be a string or an array"));
    }
    p->messages.push_back(std::move(turn));
  }
  return absl::OkStatus();
}

absl::Status ParsePrompt(const json::object& o, GenParams* p) {
  const json::value* v = Field(o, "prompt");
  if (!v) return InvalidParam("prompt", "'prompt' is a required property");
  if (v->is_string()) {
    p->prompts.push_back({std::string(v->get_string()), {}});
    return absl::OkStatus();
  }
  const char* kShape = "'prompt' must be a string, an array of strings, an array of token ids "
                       "or an array of arrays of token ids";
  if (!v->is_array()) return InvalidParam("prompt", kShape);
  const json::array& arr = v->get_array();
  if (arr.empty()) return InvalidParam("prompt", "'prompt' must not be empty");
  if (arr[0].is_string() || arr[0].is_array()) {
    // A batch: every element a string, or every element a list of ids.
    if (arr.size() > kMaxChoices)
      return InvalidParam("prompt", Cat("'prompt' holds at most ", kMaxChoices, " prompts"));
    for (const json::value& e : arr) {
      Prompt one;
      if (e.is_string() && arr[0].is_string()) {
        one.text = std::string(e.get_string());
      } else if (e.is_array() && arr[0].is_array()) {
        R1_RETURN_IF_ERROR(GetIdList(e, "prompt", &one.ids));
        if (one.ids.empty()) return InvalidParam("prompt", "'prompt' must not hold an empty list");
      } else {
        return InvalidParam("prompt", kShape);
      }
      p->prompts.push_back(std::move(one));
    }
    return absl::OkStatus();
  }
  Prompt one;
  R1_RETURN_IF_ERROR(GetIdList(*v, "prompt", &one.ids));
  p->prompts.push_back(std::move(one));
  return absl::OkStatus();
}

absl::Status ParseStop(const json::object& o, GenParams* p) {
  const json::value* v = Field(o, "stop");
  if (!v) return absl::OkStatus();
  auto add = [&](const json::value& s) -> absl::Status {
    if (!s.is_string()) return InvalidParam("stop", "'stop' must be a string or an array of strings");
    if (s.get_string().empty()) return InvalidParam("stop", "'stop' strings must not be empty");
    if (s.get_string().size() > kMaxStopBytes)
      return InvalidParam("stop", Cat("'stop' strings must be at most ", kMaxStopBytes, " bytes"));
    p->stop.emplace_back(s.get_string());
    return absl::OkStatus();
  };
  if (v->is_array()) {
    if (v->get_array().size() > kMaxStops)
      return InvalidParam("stop", Cat("'stop' holds at most ", kMaxStops, " strings"));
    for (const json::value& s : v->get_array()) R1_RETURN_IF_ERROR(add(s));
    return absl::OkStatus();
  }
  return add(*v);
}

}  // namespace

absl::Status ParseChatMessages(const json::object& body, GenParams* p) {
  return ParseMessages(body, p);
}

absl::Status InvalidParam(std::string_view param, std::string_view message) {
  absl::Status s = absl::InvalidArgumentError(absl::string_view(message.data(), message.size()));
  s.SetPayload(kParamPayload, absl::Cord(absl::string_view(param.data(), param.size())));
  return s;
}

std::string ParamOf(const absl::Status& status) {
  auto p = status.GetPayload(kParamPayload);
  return p ? std::string(*p) : std::string();
}

bool IsValidUtf8(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = b[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

absl::StatusOr<GenParams> ParseGenRequest(ApiKind kind, std::string_view body,
                                          const ParseOptions& options) {
  if (!IsValidUtf8(body)) return InvalidParam("", "the request body is not valid UTF-8");
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 64;
  json::value root = json::parse(body, ec, json::storage_ptr(), opts);
  if (ec) return InvalidParam("", Cat("the request body is not valid JSON: ", ec.message()));
  if (!root.is_object()) return InvalidParam("", "the request body must be a JSON object");
  const json::object& o = root.get_object();

  GenParams p;
  p.kind = kind;
  R1_RETURN_IF_ERROR(CheckFields(kind, o, options.ignore_unknown_fields, &p.ignored_fields));
  const json::value* model = Field(o, "model");
  if (!model) return InvalidParam("model", "'model' is a required property");
  if (!model->is_string() || model->get_string().empty())
    return InvalidParam("model", "'model' must be a non-empty string");
  p.model = std::string(model->get_string());

  if (kind == ApiKind::kChat) R1_RETURN_IF_ERROR(ParseMessages(o, &p));
  else R1_RETURN_IF_ERROR(ParsePrompt(o, &p));

  R1_RETURN_IF_ERROR(GetBool(o, "stream", &p.stream));
  if (const json::value* so = Field(o, "stream_options")) {
    if (!so->is_object()) return InvalidParam("stream_options", "'stream_options' must be an object");
    R1_RETURN_IF_ERROR(GetBool(so->get_object(), "include_usage", &p.include_usage));
    bool continuous = false;
    R1_RETURN_IF_ERROR(GetBool(so->get_object(), "continuous_usage_stats", &continuous));
    if (continuous)
      return InvalidParam("stream_options",
                          "'stream_options.continuous_usage_stats' is not supported");
  }

  std::optional<int64_t> max_tokens, max_completion_tokens;
  constexpr int64_t kU32 = std::numeric_limits<uint32_t>::max();
  R1_RETURN_IF_ERROR(GetInt(o, "max_tokens", 1, kU32, &max_tokens));
  R1_RETURN_IF_ERROR(GetInt(o, "max_completion_tokens", 1, kU32, &max_completion_tokens));
  if (max_completion_tokens) p.max_tokens = static_cast<uint32_t>(*max_completion_tokens);
  else if (max_tokens) p.max_tokens = static_cast<uint32_t>(*max_tokens);

  SamplingOptions& sp = p.sampling;
  R1_RETURN_IF_ERROR(GetNumber(o, "temperature", 0.0, 2.0, &sp.temperature));
  R1_RETURN_IF_ERROR(GetNumber(o, "top_p", 0.0, 1.0, &sp.top_p));
  if (sp.top_p == 0.f) return InvalidParam("top_p", "'top_p' must be greater than 0");
  std::optional<int64_t> top_k;
  R1_RETURN_IF_ERROR(GetInt(o, "top_k", -1, 1 << 30, &top_k));
  if (top_k && *top_k > 0) sp.top_k = static_cast<int32_t>(*top_k);
  p.temperature_set = Field(o, "temperature") != nullptr;
  p.top_p_set = Field(o, "top_p") != nullptr;
  p.top_k_set = top_k.has_value();
  R1_RETURN_IF_ERROR(GetNumber(o, "min_p", 0.0, 1.0, &sp.min_p));
  R1_RETURN_IF_ERROR(GetNumber(o, "presence_penalty", -2.0, 2.0, &sp.presence_penalty));
  R1_RETURN_IF_ERROR(GetNumber(o, "frequency_penalty", -2.0, 2.0, &sp.frequency_penalty));
  R1_RETURN_IF_ERROR(GetNumber(o, "repetition_penalty", 0.0, 100.0, &sp.repetition_penalty));
  if (sp.repetition_penalty == 0.f)
    return InvalidParam("repetition_penalty", "'repetition_penalty' must be greater than 0");

  std::optional<int64_t> seed;
  R1_RETURN_IF_ERROR(GetInt(o, "seed", 0, std::numeric_limits<int64_t>::max(), &seed));
  if (seed) sp.seed = static_cast<uint64_t>(*seed);

  R1_RETURN_IF_ERROR(ParseStop(o, &p));
  if (const json::value* ids = Field(o, "stop_token_ids"))
    R1_RETURN_IF_ERROR(GetIdList(*ids, "stop_token_ids", &p.stop_token_ids));
  R1_RETURN_IF_ERROR(GetBool(o, "ignore_eos", &p.ignore_eos));
  R1_RETURN_IF_ERROR(GetBool(o, "include_stop_str_in_output", &p.include_stop_str_in_output));
  R1_RETURN_IF_ERROR(GetBool(o, "skip_special_tokens", &p.skip_special_tokens));
  if (kind == ApiKind::kChat) {
    R1_RETURN_IF_ERROR(GetBool(o, "include_reasoning", &p.include_reasoning));
    R1_RETURN_IF_ERROR(ParseTools(o, &p));
  } else {
    R1_RETURN_IF_ERROR(GetBool(o, "echo", &p.echo));
  }

  if (kind == ApiKind::kChat) {
    R1_RETURN_IF_ERROR(GetBool(o, "logprobs", &sp.logprobs));
    std::optional<int64_t> top;
    R1_RETURN_IF_ERROR(GetInt(o, "top_logprobs", 0, 20, &top));
    if (top) {
      if (!sp.logprobs && *top > 0)
        return InvalidParam("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
      sp.top_logprobs = static_cast<int32_t>(*top);
    }
  } else {
    std::optional<int64_t> lp;
    R1_RETURN_IF_ERROR(GetInt(o, "logprobs", 0, 5, &lp));
    if (lp) {
      sp.logprobs = true;
      sp.top_logprobs = static_cast<int32_t>(*lp);
    }
  }

  std::optional<int64_t> n;
  R1_RETURN_IF_ERROR(GetInt(o, "n", 1, kMaxChoices, &n));
  if (n) p.n = static_cast<uint32_t>(*n);
  size_t prompts = kind == ApiKind::kChat ? 1 : p.prompts.size();
  if (prompts * p.n > kMaxChoices)
    return InvalidParam("n", Cat("at most ", kMaxChoices, " choices (prompts times n) per request"));
  if (const json::value* u = Field(o, "user")) {
    if (!u->is_string()) return InvalidParam("user", "'user' must be a string");
    p.user = std::string(u->get_string());
  }
  R1_RETURN_IF_ERROR(ParseOutputConstraints(o, &p));
  return p;
}

}  // namespace r1::gw
