#include "worker/service/validate_constraints.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/grammar/compiler.h"

namespace r1::service {
namespace {

using r1serve::v1::GenerateRequest;
using r1serve::v1::StructuredOutput;

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(field + ": " + why);
}

absl::StatusOr<grammar::GrammarCompiler::GrammarPtr> Compile(const StructuredOutput& so,
                                                             grammar::GrammarCompiler& c) {
  switch (so.kind_case()) {
    case StructuredOutput::kResponseFormat: return c.CompileResponseFormat(so.response_format());
    case StructuredOutput::kJsonSchema: return c.CompileJsonSchema(so.json_schema());
    case StructuredOutput::kChoice:
      return c.CompileChoice({so.choice().choices().begin(), so.choice().choices().end()});
    case StructuredOutput::kRegex: return c.CompileRegex(so.regex());
    case StructuredOutput::KIND_NOT_SET: break;
  }
  return grammar::GrammarCompiler::GrammarPtr();
}

absl::Status StructuredOutputFromProto(const GenerateRequest& req,
                                       grammar::GrammarCompiler* compiler,
                                       engine::EngineRequest* out) {
  if (!req.has_structured_output() ||
      req.structured_output().kind_case() == StructuredOutput::KIND_NOT_SET)
    return absl::OkStatus();
  if (!compiler) return Bad("structured_output", "this worker has no tokenizer");
  auto g = Compile(req.structured_output(), *compiler);
  // Every compile error is the request's fault (a schema too large for --grammar-max-states
  // included): INVALID_ARGUMENT, whose message names the keyword and its JSON pointer.
  if (!g.ok()) return Bad("structured_output", std::string(g.status().message()));
  out->grammar = std::move(*g);
  if (out->grammar && out->ignore_eos) {
    return Bad("ignore_eos", "cannot be combined with a structured output (the answer ends at "
                             "end-of-sequence once it is complete)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ConstraintsFromProto(const GenerateRequest& req, int32_t vocab_size,
                                  int32_t max_model_len, grammar::GrammarCompiler* compiler,
                                  engine::EngineRequest* out) {
  for (const auto& [id, bias] : req.logit_bias()) {
    const std::string field = absl::StrCat("logit_bias[", id, "]");
    if (id < 0 || id >= vocab_size) {
      return Bad(field, absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                     vocab_size, ")"));
    }
    if (!std::isfinite(bias) || bias < -100.f || bias > 100.f)
      return Bad(field, absl::StrCat("must be in [-100, 100], got ", bias));
    out->logit_bias.emplace_back(id, bias);
  }
  // A map has no order: sort, so that equal requests apply equal biases in the same order.
  std::sort(out->logit_bias.begin(), out->logit_bias.end());

  if (req.min_tokens() > static_cast<uint32_t>(max_model_len)) {
    return Bad("min_tokens", absl::StrCat(req.min_tokens(), " exceeds the model length ",
                                          max_model_len));
  }
  if (out->max_tokens > 0 && req.min_tokens() > static_cast<uint32_t>(out->max_tokens)) {
    return Bad("min_tokens", absl::StrCat(req.min_tokens(), " is more than max_tokens ",
                                          out->max_tokens));
  }
  out->min_tokens = static_cast<int32_t>(req.min_tokens());

  if (req.has_thinking_token_budget()) {
    if (req.thinking_token_budget() < -1) {
      return Bad("thinking_token_budget", absl::StrCat("must be -1 (no limit) or >= 0, got ",
                                                       req.thinking_token_budget()));
    }
    out->thinking_token_budget = req.thinking_token_budget();
  }
  return StructuredOutputFromProto(req, compiler, out);
}

}  // namespace r1::service
