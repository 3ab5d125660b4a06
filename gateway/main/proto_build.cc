#include "gateway/main/proto_build.h"

namespace r1::gw {

namespace {

// Fields 20-29 of the Generate request: the answer's format, logit_bias, min_tokens and the
// thinking budget.
void SetOutputConstraints(const GenParams& p, r1serve::v1::GenerateRequest* r) {
  using Kind = StructuredOutput::Kind;
  const StructuredOutput& so = p.structured;
  auto* out = r->mutable_structured_output();
  switch (so.kind) {
    case Kind::kNone: r->clear_structured_output(); break;
    case Kind::kResponseFormat: out->set_response_format(so.text); break;
    case Kind::kJsonSchema: out->set_json_schema(so.text); break;
    case Kind::kRegex: out->set_regex(so.text); break;
    case Kind::kChoice:
      for (const std::string& c : so.choices) out->mutable_choice()->add_choices(c);
      break;
  }
  for (auto [id, bias] : p.logit_bias) (*r->mutable_logit_bias())[id] = bias;
  r->set_min_tokens(p.min_tokens);
  if (p.thinking_token_budget) r->set_thinking_token_budget(*p.thinking_token_budget);
}

}  // namespace

void FillChatPrompt(const GenParams& p, r1serve::v1::ChatPrompt* chat) {
  for (const ChatTurn& t : p.messages) {
    auto* m = chat->add_messages();
    m->set_role(t.role);
    if (t.has_content) m->set_content(t.content);
    m->set_name(t.name);
    m->set_tool_call_id(t.tool_call_id);
    for (const ToolCallIn& c : t.tool_calls) {
      auto* tc = m->add_tool_calls();
      tc->set_id(c.id);
      tc->set_type("function");
      tc->set_name(c.name);
      tc->set_arguments(c.arguments);
    }
  }
  // As vLLM by default, the tools are in the prompt even with tool_choice none (the output
  // is then not parsed for calls).
  chat->set_tools_json(p.tools_json);
}

void BuildGenerateRequest(const GenParams& p, size_t prompt, const std::string& id,
                          r1serve::v1::GenerateRequest* r) {
  r->set_request_id(p.kind != ApiKind::kChat && p.prompts.size() > 1
                        ? id + "-" + std::to_string(prompt)
                        : id);
  if (p.n > 1) r->set_n(p.n);
  if (p.kind == ApiKind::kChat) {
    FillChatPrompt(p, r->mutable_chat());
  } else if (p.prompts[prompt].text) {
    r->set_text(*p.prompts[prompt].text);
  } else {
    auto* ids = r->mutable_token_ids();
    for (int32_t t : p.prompts[prompt].ids) ids->add_ids(t);
  }
  const SamplingOptions& o = p.sampling;
  auto* s = r->mutable_sampling();
  // Left unset, temperature, top_p and top_k take the checkpoint's defaults
  // (generation_config.json) on the worker, and where it has none OpenAI's: temperature 1.
  if (p.temperature_set) s->set_temperature(o.temperature);
  if (p.top_p_set) s->set_top_p(o.top_p);
  if (p.top_k_set) s->set_top_k(o.top_k);
  r->mutable_defaults()->set_temperature(1.f);
  s->set_min_p(o.min_p);
  s->set_repetition_penalty(o.repetition_penalty);
  s->set_presence_penalty(o.presence_penalty);
  s->set_frequency_penalty(o.frequency_penalty);
  // With a seed, the n choices of one prompt differ but stay repeatable: the worker gives
  // choice k seed + k.
  if (o.seed) s->set_seed(*o.seed);
  r->set_max_tokens(p.max_tokens);
  for (const std::string& stop : p.stop) r->add_stop(stop);
  for (int32_t t : p.stop_token_ids) r->add_stop_token_ids(t);
  r->set_ignore_eos(p.ignore_eos);
  r->set_logprobs(o.logprobs);
  r->set_top_logprobs(static_cast<uint32_t>(o.top_logprobs));
  r->set_include_stop_str_in_output(p.include_stop_str_in_output);
  if (!p.skip_special_tokens) r->set_skip_special_tokens(false);
  r->set_echo(p.echo);
  SetOutputConstraints(p, r);
  // echo with logprobs: the prompt's tokens come with theirs, as OpenAI's legacy API does.
  if (p.echo && o.logprobs) r->set_prompt_logprobs(static_cast<uint32_t>(o.top_logprobs));
}

void ChoiceRequest(const r1serve::v1::GenerateRequest& call, uint32_t k,
                   r1serve::v1::GenerateRequest* r) {
  *r = call;
  r->clear_n();
  if (call.n() > 1) r->set_request_id(call.request_id() + "-" + std::to_string(k));
  if (call.sampling().has_seed()) r->mutable_sampling()->set_seed(call.sampling().seed() + k);
}

}  // namespace r1::gw
