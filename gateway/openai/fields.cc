#include "gateway/openai/fields.h"

#include <boost/json.hpp>

#include "gateway/openai/cat.h"

namespace r1::gw {
namespace json = boost::json;

namespace {

bool IsFalse(const json::value& v) { return v.is_bool() && !v.get_bool(); }
bool IsTrue(const json::value& v) { return v.is_bool() && v.get_bool(); }
bool IsNumber(const json::value& v, double want) {
  return (v.is_int64() && v.get_int64() == want) || (v.is_uint64() && v.get_uint64() == want) ||
         (v.is_double() && v.get_double() == want);
}
bool IsOne(const json::value& v) { return IsNumber(v, 1); }
bool IsZero(const json::value& v) { return IsNumber(v, 0); }
bool IsEmpty(const json::value& v) {
  return (v.is_string() && v.get_string().empty()) || (v.is_array() && v.get_array().empty()) ||
         (v.is_object() && v.get_object().empty());
}
bool IsTextOnly(const json::value& v) {
  if (!v.is_array()) return false;
  for (const json::value& e : v.get_array())
    if (!e.is_string() || e.get_string() != "text") return false;
  return true;
}
bool Never(const json::value&) { return false; }

constexpr bool kChat = true, kComp = true, kNo = false;
constexpr FieldUse H = FieldUse::kHonoured, A = FieldUse::kAccepted,
                   R = FieldUse::kRefusedUnlessDefault, S = FieldUse::kStructured;

}  // namespace

const std::vector<FieldRule>& FieldRules() {
  static const std::vector<FieldRule> rules = {
      // What every generation request has.
      {"model", kChat, kComp, H, nullptr, ""},
      {"messages", kChat, kNo, H, nullptr, ""},
      {"prompt", kNo, kComp, H, nullptr, ""},
      {"stream", kChat, kComp, H, nullptr, ""},
      {"stream_options", kChat, kComp, H, nullptr, ""},
      {"max_tokens", kChat, kComp, H, nullptr, ""},
      {"max_completion_tokens", kChat, kComp, H, nullptr, ""},
      {"n", kChat, kComp, H, nullptr, ""},
      {"temperature", kChat, kComp, H, nullptr, ""},
      {"top_p", kChat, kComp, H, nullptr, ""},
      {"top_k", kChat, kComp, H, nullptr, ""},
      {"min_p", kChat, kComp, H, nullptr, ""},
      {"presence_penalty", kChat, kComp, H, nullptr, ""},
      {"frequency_penalty", kChat, kComp, H, nullptr, ""},
      {"repetition_penalty", kChat, kComp, H, nullptr, ""},
      {"seed", kChat, kComp, H, nullptr, ""},
      {"stop", kChat, kComp, H, nullptr, ""},
      {"stop_token_ids", kChat, kComp, H, nullptr, ""},
      {"include_stop_str_in_output", kChat, kComp, H, nullptr, ""},
      {"skip_special_tokens", kChat, kComp, H, nullptr, ""},
      {"ignore_eos", kChat, kComp, H, nullptr, ""},
      {"logprobs", kChat, kComp, H, nullptr, ""},
      {"top_logprobs", kChat, kNo, H, nullptr, ""},
      {"echo", kNo, kComp, H, nullptr, ""},
      {"user", kChat, kComp, H, nullptr, ""},
      {"include_reasoning", kChat, kNo, H, nullptr, ""},
      {"tools", kChat, kNo, H, nullptr, ""},
      {"tool_choice", kChat, kNo, H, nullptr, ""},
      {"parallel_tool_calls", kChat, kNo, H, nullptr, ""},
      // Structured outputs and the thinking budget: parsed by their own code.
      {"response_format", kChat, kComp, S, nullptr, ""},
      {"logit_bias", kChat, kComp, S, nullptr, ""},
      {"min_tokens", kChat, kComp, S, nullptr, ""},
      {"thinking_token_budget", kChat, kComp, S, nullptr, ""},
      {"max_reasoning_tokens", kChat, kComp, S, nullptr, ""},
      {"guided_json", kChat, kComp, S, nullptr, ""},
      {"guided_regex", kChat, kComp, S, nullptr, ""},
      {"guided_choice", kChat, kComp, S, nullptr, ""},
      {"guided_grammar", kChat, kComp, S, nullptr, ""},
      {"guided_decoding_backend", kChat, kComp, S, nullptr, ""},
      {"guided_whitespace_pattern", kChat, kComp, S, nullptr, ""},
      {"structured_outputs", kChat, kComp, S, nullptr, ""},
      // No effect on the output, as with OpenAI and vLLM.
      {"store", kChat, kComp, A, nullptr, ""},
      {"metadata", kChat, kComp, A, nullptr, ""},
      {"service_tier", kChat, kComp, A, nullptr, ""},
      {"prompt_cache_key", kChat, kComp, A, nullptr, ""},
      {"safety_identifier", kChat, kComp, A, nullptr, ""},
      {"request_id", kChat, kComp, A, nullptr, ""},
      {"cache_salt", kChat, kComp, A, nullptr, ""},
      // Known, not implemented: refused unless they have their default value.
      {"suffix", kNo, kComp, R, IsEmpty, "inserting text after the completion is not supported"},
      {"best_of", kChat, kComp, R, IsOne,
       "best_of > 1 (ranking extra candidates) is not supported; use n"},
      {"use_beam_search", kChat, kComp, R, IsFalse, "beam search is not supported"},
      {"length_penalty", kChat, kComp, R, IsOne, "length_penalty applies to beam search, which is not supported"},
      {"prompt_logprobs", kChat, kComp, R, Never,
       "prompt_logprobs is not supported; /v1/completions with echo and logprobs returns the "
       "prompt's log-probabilities"},
      {"truncate_prompt_tokens", kChat, kComp, R, Never, "prompt truncation is not supported"},
      {"allowed_token_ids", kChat, kComp, R, IsEmpty, "allowed_token_ids is not supported"},
      {"bad_words", kChat, kComp, R, IsEmpty, "bad_words is not supported"},
      {"logits_processors", kChat, kComp, R, IsEmpty, "logits_processors is not supported"},
      {"spaces_between_special_tokens", kChat, kComp, R, IsTrue,
       "special tokens are always joined without spaces"},
      {"priority", kChat, kComp, R, IsZero, "request priorities are not supported"},
      {"return_tokens_as_token_ids", kChat, kComp, R, IsFalse, "return_tokens_as_token_ids is not supported"},
      {"return_token_ids", kChat, kComp, R, IsFalse, "return_token_ids is not supported"},
      {"add_special_tokens", kChat, kComp, R, IsFalse,
       "prompts are tokenized as given (the chat template writes the special tokens); "
       "add_special_tokens must be false"},
      {"echo", kChat, kNo, R, IsFalse, "echo is supported on /v1/completions only"},
      {"add_generation_prompt", kChat, kNo, R, IsTrue,
       "the prompt always ends with the assistant's generation prompt"},
      {"continue_final_message", kChat, kNo, R, IsFalse, "continue_final_message is not supported"},
      {"chat_template", kChat, kNo, R, IsEmpty,
       "a per-request chat template is not supported (the worker's --chat-template renders)"},
      {"chat_template_kwargs", kChat, kNo, R, IsEmpty, "chat_template_kwargs is not supported"},
      {"documents", kChat, kNo, R, IsEmpty, "documents are not supported"},
      {"functions", kChat, kNo, R, Never, "'functions' is deprecated and not supported; use 'tools'"},
      {"function_call", kChat, kNo, R, Never,
       "'function_call' is deprecated and not supported; use 'tool_choice'"},
      {"modalities", kChat, kNo, R, IsTextOnly, "only text output is supported"},
      {"audio", kChat, kNo, R, Never, "audio output is not supported"},
      {"prediction", kChat, kNo, R, Never, "predicted outputs are not supported"},
      {"web_search_options", kChat, kNo, R, Never, "web search is not supported"},
      {"reasoning_effort", kChat, kNo, R, Never,
       "reasoning_effort is not supported; thinking_token_budget bounds the reasoning"},
      {"verbosity", kChat, kNo, R, Never, "verbosity is not supported"},
  };
  return rules;
}

absl::Status CheckFields(ApiKind kind, const json::object& body, bool ignore_unknown,
                         std::vector<std::string>* ignored) {
  const bool chat = kind == ApiKind::kChat;
  for (const auto& kv : body) {
    std::string_view name(kv.key().data(), kv.key().size());
    const FieldRule* rule = nullptr;
    for (const FieldRule& r : FieldRules()) {
      if (r.name == name && (chat ? r.chat : r.completion)) {
        rule = &r;
        break;
      }
    }
    if (!rule) {
      if (ignore_unknown) {
        ignored->emplace_back(name);
        continue;
      }
      // OpenAI's words for a field it does not know.
      return InvalidParam(name, Cat("Unrecognized request argument supplied: ", name));
    }
    if (rule->use == FieldUse::kRefusedUnlessDefault && !kv.value().is_null() &&
        !rule->is_default(kv.value()))
      return InvalidParam(name, Cat("'", name, "': ", rule->why));
  }
  return absl::OkStatus();
}

}  // namespace r1::gw
