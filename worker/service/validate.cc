#include "worker/service/validate.h"

#include <cmath>
#include <string>

#include "worker/service/validate_constraints.h"

namespace r1::service {
namespace {

using r1serve::v1::GenerateRequest;

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(field + ": " + why);
}

std::string Num(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

absl::Status InRange(const std::string& field, float v, float lo, float hi) {
  if (!std::isfinite(v) || v < lo || v > hi) {
    return Bad(field, "must be in [" + Num(lo) + ", " + Num(hi) + "], got " + Num(v));
  }
  return absl::OkStatus();
}

absl::Status CheckIds(const std::string& field, const google::protobuf::RepeatedField<int32_t>& ids,
                      int32_t vocab) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return Bad(field + "[" + std::to_string(i) + "]",
                 "token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                     std::to_string(vocab) + ")");
    }
  }
  return absl::OkStatus();
}

const char kNoTokenizer[] = "this worker has no tokenizer; send prompt.token_ids";

absl::StatusOr<std::vector<int32_t>> Prompt(const GenerateRequest& req,
                                            const RequestLimits& limits, PromptCodec* codec) {
  switch (req.prompt_case()) {
    case GenerateRequest::kTokenIds: {
      const auto& ids = req.token_ids().ids();
      if (ids.empty()) return Bad("prompt.token_ids", "must not be empty");
      R1_RETURN_IF_ERROR(CheckIds("prompt.token_ids", ids, limits.vocab_size));
      return std::vector<int32_t>(ids.begin(), ids.end());
    }
    case GenerateRequest::kText: {
      if (!codec) return Bad("prompt.text", kNoTokenizer);
      if (req.text().empty()) return Bad("prompt.text", "must not be empty");
      auto ids = codec->EncodeText(req.text());
      if (!ids.ok()) return Bad("prompt.text", std::string(ids.status().message()));
      return ids;
    }
    case GenerateRequest::kChat:
      return EncodeChatPrompt(req.chat(), codec);
    case GenerateRequest::PROMPT_NOT_SET:
      break;
  }
  return Bad("prompt", "one of text, token_ids or chat is required");
}

// The layers of defaults for one sampling field: the request, the checkpoint's, the caller's
// fallback (GenerateRequest.defaults), the proto's zero.
template <typename T>
T Layered(bool has, T value, const std::optional<T>& generation, bool has_fallback, T fallback) {
  if (has) return value;
  if (generation) return *generation;
  if (has_fallback) return fallback;
  return T{};
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> EncodeChatPrompt(const r1serve::v1::ChatPrompt& chat,
                                                      PromptCodec* codec) {
  if (!codec) return Bad("prompt.chat", kNoTokenizer);
  const auto& msgs = chat.messages();
  if (msgs.empty()) return Bad("prompt.chat.messages", "must not be empty");
  std::vector<ChatTurn> turns;
  for (int i = 0; i < msgs.size(); ++i) {
    const std::string field = "prompt.chat.messages[" + std::to_string(i) + "]";
    const std::string& role = msgs[i].role();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return Bad(field + ".role",
                 "must be system, user, assistant or tool, got '" + role.substr(0, 32) + "'");
    }
    if (!msgs[i].has_content() && role != "assistant") return Bad(field + ".content", "is required");
    ChatTurn turn{role, msgs[i].content()};
    turn.has_content = msgs[i].has_content();
    for (const auto& c : msgs[i].tool_calls()) turn.tool_calls.push_back({c.name(), c.arguments()});
    turns.push_back(std::move(turn));
  }
  if (!chat.tools_json().empty() && !codec->supports_tools()) {
    return Bad("tools", "the chat template (" +
                            (codec->chat_template_name().empty() ? std::string("none")
                                                                 : codec->chat_template_name()) +
                            ") has no tool support");
  }
  auto ids = codec->EncodeChat(turns, chat.tools_json());
  if (!ids.ok()) return Bad("prompt.chat", std::string(ids.status().message()));
  return ids;
}

absl::StatusOr<int> ChoiceCount(const GenerateRequest& req) {
  if (req.n() > kMaxChoices)
    return Bad("n", "at most " + std::to_string(kMaxChoices) + " choices, got " +
                        std::to_string(req.n()));
  if (req.n() > 1 && req.resume().output_token_ids_size() > 0)
    return Bad("n", "a resumed stream is one choice, got " + std::to_string(req.n()));
  return req.n() > 1 ? static_cast<int>(req.n()) : 1;
}

engine::EngineRequest ForChoice(const engine::EngineRequest& base, int k, int n) {
  engine::EngineRequest out = base;
  if (n > 1) out.request_id += "-" + std::to_string(k);
  // Unsigned: wraps around past 2^64 - 1, as the gateway's sum did.
  if (out.sampling.seed) out.sampling.seed = *out.sampling.seed + static_cast<uint64_t>(k);
  if (k > 0) out.prompt_logprobs = -1;
  return out;
}

absl::StatusOr<engine::EngineRequest> ToEngineRequest(const GenerateRequest& req,
                                                      const RequestLimits& limits,
                                                      PromptCodec* codec) {
  engine::EngineRequest out;
  out.request_id = req.request_id();
  if (out.request_id.size() > 256) return Bad("request_id", "longer than 256 bytes");

  const auto& s = req.sampling();
  const auto& fb = req.defaults();
  R1_RETURN_IF_ERROR(InRange("sampling.temperature", s.temperature(), 0, 100));
  R1_RETURN_IF_ERROR(InRange("sampling.top_p", s.top_p(), 0, 1));
  if (s.top_k() < 0) return Bad("sampling.top_k", "must be >= 0, got " + std::to_string(s.top_k()));
  R1_RETURN_IF_ERROR(InRange("defaults.temperature", fb.temperature(), 0, 100));
  R1_RETURN_IF_ERROR(InRange("defaults.top_p", fb.top_p(), 0, 1));
  if (fb.top_k() < 0) return Bad("defaults.top_k", "must be >= 0, got " + std::to_string(fb.top_k()));
  const GenerationDefaults& gen = limits.generation;
  const float temperature = Layered(s.has_temperature(), s.temperature(), gen.temperature,
                                    fb.has_temperature(), fb.temperature());
  const float top_p = Layered(s.has_top_p(), s.top_p(), gen.top_p, fb.has_top_p(), fb.top_p());
  const int32_t top_k = Layered(s.has_top_k(), s.top_k(), gen.top_k, fb.has_top_k(), fb.top_k());
  R1_RETURN_IF_ERROR(InRange("sampling.min_p", s.min_p(), 0, 1));
  R1_RETURN_IF_ERROR(InRange("sampling.repetition_penalty", s.repetition_penalty(), 0, 100));
  R1_RETURN_IF_ERROR(InRange("sampling.presence_penalty", s.presence_penalty(), -2, 2));
  R1_RETURN_IF_ERROR(InRange("sampling.frequency_penalty", s.frequency_penalty(), -2, 2));
  out.sampling.temperature = temperature;
  out.sampling.top_p = top_p > 0 ? top_p : 1.f;
  out.sampling.top_k = top_k;
  out.sampling.min_p = s.min_p();
  out.sampling.repetition_penalty = s.repetition_penalty() > 0 ? s.repetition_penalty() : 1.f;
  out.sampling.presence_penalty = s.presence_penalty();
  out.sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) out.sampling.seed = s.seed();

  if (req.stop_size() > 16) {
    return Bad("stop", "at most 16 strings, got " + std::to_string(req.stop_size()));
  }
  for (int i = 0; i < req.stop_size(); ++i) {
    const std::string& st = req.stop(i);
    std::string field = "stop[" + std::to_string(i) + "]";
    if (st.empty()) return Bad(field, "must not be empty");
    if (st.size() > 256) return Bad(field, "longer than 256 bytes");
    out.stop.push_back(st);
  }
  if (!out.stop.empty() && !codec) return Bad("stop", "this worker has no tokenizer");
  if (req.stop_token_ids_size() > 64) return Bad("stop_token_ids", "at most 64 ids");
  R1_RETURN_IF_ERROR(CheckIds("stop_token_ids", req.stop_token_ids(), limits.vocab_size));
  out.stop_token_ids.assign(req.stop_token_ids().begin(), req.stop_token_ids().end());
  if (req.top_logprobs() > 20) {
    return Bad("top_logprobs", "at most 20, got " + std::to_string(req.top_logprobs()));
  }
  if (req.has_prompt_logprobs()) {
    if (req.prompt_logprobs() > 20)
      return Bad("prompt_logprobs", "at most 20, got " + std::to_string(req.prompt_logprobs()));
    out.prompt_logprobs = static_cast<int32_t>(req.prompt_logprobs());
  }
  out.sampling.logprobs = req.logprobs() || req.top_logprobs() > 0;
  out.sampling.top_logprobs = static_cast<int32_t>(req.top_logprobs());
  out.ignore_eos = req.ignore_eos();
  out.include_stop_str_in_output = req.include_stop_str_in_output();
  out.skip_special_tokens = !req.has_skip_special_tokens() || req.skip_special_tokens();
  if (req.max_tokens() > static_cast<uint32_t>(limits.max_model_len)) {
    return Bad("max_tokens", std::to_string(req.max_tokens()) + " exceeds the model length " +
                                 std::to_string(limits.max_model_len));
  }
  out.max_tokens = static_cast<int32_t>(req.max_tokens());

  R1_ASSIGN_OR_RETURN(out.prompt, Prompt(req, limits, codec));
  if (out.prompt.empty()) return Bad("prompt", "has no tokens");
  if (static_cast<int64_t>(out.prompt.size()) >= limits.max_model_len) {
    return Bad("prompt", std::to_string(out.prompt.size()) +
                             " tokens leave no room to generate within the model length " +
                             std::to_string(limits.max_model_len));
  }
  const auto& resumed = req.resume().output_token_ids();
  R1_RETURN_IF_ERROR(CheckIds("resume.output_token_ids", resumed, limits.vocab_size));
  if (static_cast<int64_t>(out.prompt.size()) + resumed.size() >= limits.max_model_len) {
    return Bad("resume.output_token_ids",
               std::to_string(out.prompt.size()) + " prompt and " + std::to_string(resumed.size()) +
                   " resumed tokens leave no room to generate within the model length " +
                   std::to_string(limits.max_model_len));
  }
  out.resume_output.assign(resumed.begin(), resumed.end());
  R1_RETURN_IF_ERROR(ConstraintsFromProto(req, limits.vocab_size, limits.max_model_len,
                                          limits.compiler, &out));
  return out;
}

}  // namespace r1::service
