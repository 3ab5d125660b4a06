#include "gateway/openai/tool_request.h"

#include <algorithm>

#include <boost/json.hpp>

#include "gateway/openai/cat.h"

namespace r1::gw {
namespace json = boost::json;

namespace {

const json::value* Get(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  return it == o.end() || it->value().is_null() ? nullptr : &it->value();
}

// OpenAI's rule for function names: a-z, A-Z, 0-9, underscores and dashes, at most 64.
bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

absl::Status ParseToolList(const json::value& v, GenParams* p) {
  if (!v.is_array()) return InvalidParam("tools", "'tools' must be an array");
  if (v.get_array().empty()) return InvalidParam("tools", "'tools' must not be empty");
  for (size_t i = 0; i < v.get_array().size(); ++i) {
    const std::string at = Cat("tools[", i, "]");
    const json::object* t = v.get_array()[i].if_object();
    const json::value* type = t ? Get(*t, "type") : nullptr;
    if (!type || !type->is_string() || type->get_string() != "function")
      return InvalidParam(at, Cat("'", at, ".type' must be \"function\""));
    const json::value* fn = Get(*t, "function");
    if (!fn || !fn->is_object())
      return InvalidParam(at, Cat("'", at, ".function' must be an object"));
    const json::value* name = Get(fn->get_object(), "name");
    if (!name || !name->is_string() || !ValidName(name->get_string()))
      return InvalidParam(at, Cat("'", at, ".function.name' must be 1-64 of a-z, A-Z, 0-9, _ and -"));
    const json::value* params = Get(fn->get_object(), "parameters");
    if (params && !params->is_object())
      return InvalidParam(at, Cat("'", at, ".function.parameters' must be a JSON Schema object"));
    const json::value* desc = Get(fn->get_object(), "description");
    if (desc && !desc->is_string())
      return InvalidParam(at, Cat("'", at, ".function.description' must be a string"));
    p->tool_names.emplace_back(name->get_string());
  }
  p->tools_json = json::serialize(v);
  return absl::OkStatus();
}

absl::Status ParseToolChoice(const json::value& v, GenParams* p) {
  if (v.is_string()) {
    std::string_view s = v.get_string();
    if (s == "none") p->tool_choice = ToolChoice::kNone;
    else if (s == "auto") p->tool_choice = ToolChoice::kAuto;
    else if (s == "required") p->tool_choice = ToolChoice::kRequired;
    else return InvalidParam("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
  } else {
    const json::object* o = v.if_object();
    const json::value* fn = o ? Get(*o, "function") : nullptr;
    const json::value* name = fn && fn->is_object() ? Get(fn->get_object(), "name") : nullptr;
    if (!name || !name->is_string())
      return InvalidParam("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    p->tool_choice = ToolChoice::kNamed;
    p->tool_choice_name = std::string(name->get_string());
    if (std::find(p->tool_names.begin(), p->tool_names.end(), p->tool_choice_name) ==
        p->tool_names.end())
      return InvalidParam("tool_choice", Cat("'tool_choice' names '", p->tool_choice_name,
                                             "', which is not in 'tools'"));
  }
  // Forcing a call needs the output constrained to the call's JSON (vLLM uses guided
  // decoding for it); until structured outputs are wired, say so instead of hoping.
  if (p->tool_choice == ToolChoice::kRequired || p->tool_choice == ToolChoice::kNamed)
    return InvalidParam("tool_choice",
                        "'tool_choice' required or a named function needs constrained decoding, "
                        "which this server does not have yet; use \"auto\"");
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseTools(const json::object& body, GenParams* p) {
  const json::value* tools = Get(body, "tools");
  if (tools) R1_RETURN_IF_ERROR(ParseToolList(*tools, p));
  if (const json::value* choice = Get(body, "tool_choice")) {
    // As vLLM: a tool_choice needs tools.
    if (!tools) return InvalidParam("tool_choice", "'tool_choice' needs 'tools'");
    R1_RETURN_IF_ERROR(ParseToolChoice(*choice, p));
  } else if (tools) {
    p->tool_choice = ToolChoice::kAuto;
  }
  if (const json::value* par = Get(body, "parallel_tool_calls")) {
    if (!par->is_bool())
      return InvalidParam("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    p->parallel_tool_calls = par->get_bool();
  }
  return absl::OkStatus();
}

}  // namespace r1::gw
