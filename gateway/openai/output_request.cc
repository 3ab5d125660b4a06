#include "gateway/openai/output_request.h"

#include <cctype>
#include <limits>

#include <boost/json.hpp>

#include "gateway/openai/cat.h"
#include "gateway/openai/json_get.h"

namespace r1::gw {
namespace json = boost::json;

namespace {

using Kind = StructuredOutput::Kind;

absl::Status SetFormat(GenParams* p, StructuredOutput so) {
  if (p->structured.kind != Kind::kNone) {
    return InvalidParam(so.param, Cat("'", so.param, "' and '", p->structured.param,
                                      "' both give the answer a format: give one of them"));
  }
  p->structured = std::move(so);
  return absl::OkStatus();
}

// A JSON Schema given as a JSON value, or as its text (vLLM takes both): JSON text.
absl::StatusOr<std::string> SchemaText(const json::value& v, std::string_view name) {
  if (v.is_object() || v.is_bool()) return json::serialize(v);
  if (!v.is_string())
    return InvalidParam(name, Cat("'", name, "' must be a JSON Schema (an object) or its text"));
  boost::system::error_code ec;
  json::value schema = json::parse(v.get_string(), ec);
  if (ec) return InvalidParam(name, Cat("'", name, "' is not valid JSON: ", ec.message()));
  return SchemaText(schema, name);
}

absl::StatusOr<std::vector<std::string>> Choices(const json::value& v, std::string_view name) {
  const json::array* a = v.if_array();
  if (!a || a->empty())
    return InvalidParam(name, Cat("'", name, "' must be a non-empty array of strings"));
  std::vector<std::string> out;
  for (const json::value& c : *a) {
    if (!c.is_string()) return InvalidParam(name, Cat("'", name, "' must hold strings only"));
    out.emplace_back(c.get_string());
  }
  return out;
}

// OpenAI's response_format: "text" constrains nothing; json_object and json_schema go to the
// worker as given (its compiler checks the json_schema envelope and the schema).
absl::Status ParseResponseFormat(const json::object& body, GenParams* p) {
  const json::value* rf = Field(body, "response_format");
  if (!rf) return absl::OkStatus();
  const char* kTypes = "'response_format.type' must be one of text, json_object, json_schema";
  if (!rf->is_object()) return InvalidParam("response_format", "'response_format' must be an object");
  const json::value* type = Field(rf->get_object(), "type");
  if (!type || !type->is_string()) return InvalidParam("response_format", kTypes);
  const std::string_view t = type->get_string();
  if (t == "text") {
    for (const auto& kv : rf->get_object())
      if (kv.key() != "type")
        return InvalidParam("response_format", Cat("'response_format.", std::string_view(kv.key()),
                                                   "' is not a field of type text"));
    return absl::OkStatus();
  }
  if (t != "json_object" && t != "json_schema") return InvalidParam("response_format", kTypes);
  return SetFormat(p, {Kind::kResponseFormat, json::serialize(*rf), {}, "response_format"});
}

// vLLM's structured_outputs: exactly one of json, regex, choice, json_object.
absl::Status ParseStructuredOutputs(const json::object& body, GenParams* p) {
  const json::value* v = Field(body, "structured_outputs");
  if (!v) return absl::OkStatus();
  constexpr std::string_view kName = "structured_outputs";
  if (!v->is_object()) return InvalidParam(kName, "'structured_outputs' must be an object");
  StructuredOutput so;
  so.param = std::string(kName);
  int given = 0;
  for (const auto& kv : v->get_object()) {
    const std::string_view k = kv.key();
    const std::string field = Cat("structured_outputs.", k);
    if (kv.value().is_null()) continue;
    ++given;
    if (k == "json") {
      R1_ASSIGN_OR_RETURN(so.text, SchemaText(kv.value(), field));
      so.kind = Kind::kJsonSchema;
    } else if (k == "regex") {
      if (!kv.value().is_string()) return InvalidParam(kName, Cat("'", field, "' must be a string"));
      so.text = std::string(kv.value().get_string());
      so.kind = Kind::kRegex;
    } else if (k == "choice") {
      R1_ASSIGN_OR_RETURN(so.choices, Choices(kv.value(), field));
      so.kind = Kind::kChoice;
    } else if (k == "json_object") {
      if (!kv.value().is_bool()) return InvalidParam(kName, Cat("'", field, "' must be a boolean"));
      if (!kv.value().get_bool()) {
        --given;
        continue;
      }
      so.text = R"({"type":"json_object"})";
      so.kind = Kind::kResponseFormat;
    } else {
      return InvalidParam(kName, Cat("'", field, "' is not supported (json, regex, choice and "
                                     "json_object are)"));
    }
  }
  if (given > 1)
    return InvalidParam(kName, "'structured_outputs' takes one of json, regex, choice, json_object");
  if (so.kind == Kind::kNone) return absl::OkStatus();
  return SetFormat(p, std::move(so));
}

// vLLM's guided_* fields.
absl::Status ParseGuided(const json::object& body, GenParams* p) {
  if (const json::value* v = Field(body, "guided_json")) {
    R1_ASSIGN_OR_RETURN(std::string text, SchemaText(*v, "guided_json"));
    R1_RETURN_IF_ERROR(SetFormat(p, {Kind::kJsonSchema, std::move(text), {}, "guided_json"}));
  }
  if (const json::value* v = Field(body, "guided_regex")) {
    if (!v->is_string()) return InvalidParam("guided_regex", "'guided_regex' must be a string");
    R1_RETURN_IF_ERROR(
        SetFormat(p, {Kind::kRegex, std::string(v->get_string()), {}, "guided_regex"}));
  }
  if (const json::value* v = Field(body, "guided_choice")) {
    R1_ASSIGN_OR_RETURN(std::vector<std::string> choices, Choices(*v, "guided_choice"));
    R1_RETURN_IF_ERROR(SetFormat(p, {Kind::kChoice, {}, std::move(choices), "guided_choice"}));
  }
  if (Field(body, "guided_grammar"))
    return InvalidParam("guided_grammar", "'guided_grammar' is not supported (no EBNF or Lark "
                                          "grammars): use guided_json, guided_regex or guided_choice");
  if (Field(body, "guided_whitespace_pattern"))
    return InvalidParam("guided_whitespace_pattern",
                        "'guided_whitespace_pattern' is not supported: whitespace between JSON "
                        "tokens is bounded by the worker's --grammar-max-whitespace");
  // One grammar engine serves every request: the backend's name changes nothing.
  if (const json::value* v = Field(body, "guided_decoding_backend"); v && !v->is_string())
    return InvalidParam("guided_decoding_backend", "'guided_decoding_backend' must be a string");
  return absl::OkStatus();
}

// OpenAI's logit_bias: {"token id": bias in [-100, 100]}.
absl::Status ParseLogitBias(const json::object& body, GenParams* p) {
  const json::value* v = Field(body, "logit_bias");
  if (!v) return absl::OkStatus();
  constexpr std::string_view kName = "logit_bias";
  if (!v->is_object())
    return InvalidParam(kName, "'logit_bias' must be an object mapping token ids to biases");
  for (const auto& kv : v->get_object()) {
    const std::string_view key = kv.key();
    int64_t id = 0;
    bool digits = !key.empty() && key.size() <= 10;
    for (char c : key) {
      digits = digits && std::isdigit(static_cast<unsigned char>(c));
      id = id * 10 + (c - '0');
    }
    if (!digits || id > std::numeric_limits<int32_t>::max())
      return InvalidParam(kName, Cat("'logit_bias' keys must be token ids, got \"", key, "\""));
    double bias = 0;
    R1_RETURN_IF_ERROR(AsNumber(kv.value(), kName, &bias));
    if (!(bias >= -100 && bias <= 100))
      return InvalidParam(kName, Cat("'logit_bias' values must be between -100 and 100, got ",
                                     bias, " for token ", id));
    p->logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(bias));
  }
  return absl::OkStatus();
}

absl::Status ParseThinkingBudget(const json::object& body, GenParams* p) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  std::optional<int64_t> budget, max_reasoning;
  R1_RETURN_IF_ERROR(GetInt(body, "thinking_token_budget", -1, kMax, &budget));
  R1_RETURN_IF_ERROR(GetInt(body, "max_reasoning_tokens", -1, kMax, &max_reasoning));
  if (budget && max_reasoning && *budget != *max_reasoning)
    return InvalidParam("max_reasoning_tokens", "'max_reasoning_tokens' and "
                        "'thinking_token_budget' are the same limit: give one");
  if (budget || max_reasoning) p->thinking_token_budget = static_cast<int32_t>(budget ? *budget : *max_reasoning);
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseOutputConstraints(const json::object& body, GenParams* p) {
  R1_RETURN_IF_ERROR(ParseResponseFormat(body, p));
  R1_RETURN_IF_ERROR(ParseGuided(body, p));
  R1_RETURN_IF_ERROR(ParseStructuredOutputs(body, p));
  if (p->structured.kind != Kind::kNone && p->ignore_eos)
    return InvalidParam("ignore_eos", Cat("'ignore_eos' cannot be combined with '",
                                          p->structured.param, "': the answer ends once complete"));
  R1_RETURN_IF_ERROR(ParseLogitBias(body, p));
  std::optional<int64_t> min_tokens;
  R1_RETURN_IF_ERROR(GetInt(body, "min_tokens", 0, std::numeric_limits<uint32_t>::max(), &min_tokens));
  if (min_tokens) {
    if (p->max_tokens > 0 && *min_tokens > p->max_tokens)
      return InvalidParam("min_tokens", Cat("'min_tokens' (", *min_tokens,
                                            ") must not exceed max_tokens (", p->max_tokens, ")"));
    p->min_tokens = static_cast<uint32_t>(*min_tokens);
  }
  return ParseThinkingBudget(body, p);
}

std::string ParamOfWorkerError(const GenParams& p, std::string* message) {
  constexpr std::string_view kFormat = "structured_output: ";
  if (message->compare(0, kFormat.size(), kFormat) == 0) {
    message->erase(0, kFormat.size());
    return p.structured.param;
  }
  for (std::string_view field : {"logit_bias", "min_tokens", "thinking_token_budget", "ignore_eos"}) {
    if (message->compare(0, field.size(), field) == 0 && message->size() > field.size() &&
        ((*message)[field.size()] == ':' || (*message)[field.size()] == '['))
      return std::string(field);
  }
  return "";
}

}  // namespace r1::gw
