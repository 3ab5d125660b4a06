// The output-constraint fields of a GenerateRequest (20-23) into the EngineRequest: ranges and
// vocabulary checks naming the field, every structured-output kind compiled, compile errors
// (and schemas too large for --grammar-max-states) as INVALID_ARGUMENT "structured_output: ...".
#include <gtest/gtest.h>

#include "worker/grammar/compiler.h"
#include "worker/service/validate.h"

namespace r1::service {
namespace {

using r1serve::v1::GenerateRequest;

constexpr int32_t kVocab = 300;

// The 256 single bytes as tokens, end-of-sequence and a few specials after them.
grammar::GrammarCompiler& Compiler(int64_t max_states = 200000) {
  std::vector<std::optional<std::string>> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
  grammar::CompilerOptions o;
  o.grammar.max_states = max_states;
  static std::map<int64_t, std::unique_ptr<grammar::GrammarCompiler>> compilers;
  auto& c = compilers[max_states];
  if (!c) c = std::make_unique<grammar::GrammarCompiler>(*grammar::TokenVocabulary::Create(tokens, kVocab), o);
  return *c;
}

GenerateRequest Base() {
  GenerateRequest req;
  req.mutable_token_ids()->add_ids(1);
  return req;
}

absl::StatusOr<engine::EngineRequest> Validate(const GenerateRequest& req,
                                               grammar::GrammarCompiler* c = &Compiler()) {
  return ToEngineRequest(req, RequestLimits{/*max_model_len=*/64, kVocab, c}, nullptr);
}

std::string Error(const GenerateRequest& req, grammar::GrammarCompiler* c = &Compiler()) {
  auto r = Validate(req, c);
  if (r.ok()) return "ok";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  return std::string(r.status().message());
}

TEST(ValidateConstraints, NothingAskedLeavesTheRequestFree) {
  auto r = Validate(Base());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->grammar, nullptr);
  EXPECT_TRUE(r->logit_bias.empty());
  EXPECT_EQ(r->min_tokens, 0);
  EXPECT_FALSE(r->thinking_token_budget.has_value());
}

TEST(ValidateConstraints, LogitBiasIdsInTheVocabularyAndValuesInRange) {
  GenerateRequest req = Base();
  (*req.mutable_logit_bias())[7] = -100.f;
  (*req.mutable_logit_bias())[3] = 2.5f;
  auto r = Validate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->logit_bias, (std::vector<std::pair<int32_t, float>>{{3, 2.5f}, {7, -100.f}}));
  (*req.mutable_logit_bias())[kVocab] = 1.f;
  EXPECT_EQ(Error(req), "logit_bias[300]: token id 300 is outside the vocabulary [0, 300)");
  req.mutable_logit_bias()->erase(kVocab);
  (*req.mutable_logit_bias())[4] = 100.5f;
  EXPECT_EQ(Error(req), "logit_bias[4]: must be in [-100, 100], got 100.5");
}

TEST(ValidateConstraints, MinTokensWithinMaxTokensAndTheModelLength) {
  GenerateRequest req = Base();
  req.set_min_tokens(5);
  EXPECT_EQ(Validate(req)->min_tokens, 5);
  req.set_max_tokens(4);
  EXPECT_EQ(Error(req), "min_tokens: 5 is more than max_tokens 4");
  req.set_max_tokens(0);
  req.set_min_tokens(65);
  EXPECT_EQ(Error(req), "min_tokens: 65 exceeds the model length 64");
}

TEST(ValidateConstraints, ThinkingBudgetIsMinusOneOrMore) {
  GenerateRequest req = Base();
  req.set_thinking_token_budget(-1);
  EXPECT_EQ(Validate(req)->thinking_token_budget, -1);
  req.set_thinking_token_budget(0);
  EXPECT_EQ(Validate(req)->thinking_token_budget, 0);
  req.set_thinking_token_budget(-2);
  EXPECT_EQ(Error(req), "thinking_token_budget: must be -1 (no limit) or >= 0, got -2");
}

TEST(ValidateConstraints, EveryStructuredOutputKindCompiles) {
  std::vector<GenerateRequest> reqs(5, Base());
  reqs[0].mutable_structured_output()->set_response_format(R"({"type":"json_object"})");
  reqs[1].mutable_structured_output()->set_response_format(
      R"({"type":"json_schema","json_schema":{"name":"n","schema":{"type":"integer"}}})");
  reqs[2].mutable_structured_output()->set_json_schema(R"({"enum":[1,"a",null]})");
  reqs[3].mutable_structured_output()->mutable_choice()->add_choices("yes");
  reqs[4].mutable_structured_output()->set_regex("[0-9]{3}");
  for (const GenerateRequest& req : reqs) {
    auto r = Validate(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NE(r->grammar, nullptr) << req.structured_output().DebugString();
  }
  GenerateRequest text = Base();
  text.mutable_structured_output()->set_response_format(R"({"type":"text"})");
  text.set_ignore_eos(true);  // nothing to end: allowed
  EXPECT_EQ(Validate(text)->grammar, nullptr);
}

TEST(ValidateConstraints, CompileErrorsNameTheKeywordAndAreInvalidArgument) {
  GenerateRequest req = Base();
  req.mutable_structured_output()->set_json_schema(
      R"({"type":"object","properties":{"d":{"type":"string","format":"date"}}})");
  EXPECT_EQ(Error(req), "structured_output: json_schema: \"format\" at #/properties/d/format: "
                        "this keyword is not supported");
  req.mutable_structured_output()->set_regex("(a)\\1");
  EXPECT_EQ(Error(req).rfind("structured_output: guided_regex: ", 0), 0u) << Error(req);
  req.mutable_structured_output()->mutable_choice();  // an empty list
  EXPECT_EQ(Error(req), "structured_output: guided_choice: the list is empty");
  // Past --grammar-max-states the compiler says ResourceExhausted: still the request's fault.
  req.mutable_structured_output()->set_regex("[a-z]{1000}");
  EXPECT_NE(Error(req, &Compiler(/*max_states=*/100)).find("structured_output: "), std::string::npos);
  EXPECT_EQ(Error(req, nullptr), "structured_output: this worker has no tokenizer");
}

TEST(ValidateConstraints, IgnoreEosCannotJoinAStructuredOutput) {
  GenerateRequest req = Base();
  req.mutable_structured_output()->set_regex("a");
  req.set_ignore_eos(true);
  EXPECT_EQ(Error(req).rfind("ignore_eos: cannot be combined with a structured output", 0), 0u);
}

}  // namespace
}  // namespace r1::service
