// The output-constraint fields of OpenAI requests: every way to give the answer a format
// (response_format, guided_json / guided_regex / guided_choice, structured_outputs) and
// errors naming the field; logit_bias, min_tokens and the thinking budget's two names; the
// worker's refusals given back their request field (ParamOfWorkerError).
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "gateway/openai/output_request.h"
#include "gateway/openai/request.h"

namespace r1::gw {
namespace {

using Kind = StructuredOutput::Kind;

// A chat body with `extra` fields added.
absl::StatusOr<GenParams> Chat(const std::string& extra) {
  return ParseGenRequest(ApiKind::kChat,
                         R"({"model":"m","messages":[{"role":"user","content":"x"}])" +
                             (extra.empty() ? "" : "," + extra) + "}");
}

std::string BadParam(const absl::StatusOr<GenParams>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? "ok" : ParamOf(r.status());
}

TEST(OutputRequest, ResponseFormatGoesToTheWorkerAsGiven) {
  auto r = Chat(R"("response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"integer"}}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->structured.kind, Kind::kResponseFormat);
  EXPECT_EQ(r->structured.param, "response_format");
  EXPECT_EQ(boost::json::parse(r->structured.text),
            boost::json::parse(R"({"type":"json_schema","json_schema":{"name":"a","schema":{"type":"integer"}}})"));
  EXPECT_EQ(Chat(R"("response_format":{"type":"json_object"})")->structured.kind, Kind::kResponseFormat);
  EXPECT_EQ(Chat(R"("response_format":{"type":"text"})")->structured.kind, Kind::kNone);
  EXPECT_EQ(Chat(R"("response_format":null)")->structured.kind, Kind::kNone);
  EXPECT_EQ(BadParam(Chat(R"("response_format":{"type":"xml"})")), "response_format");
  EXPECT_EQ(BadParam(Chat(R"("response_format":"json")")), "response_format");
  EXPECT_EQ(BadParam(Chat(R"("response_format":{"type":"text","schema":{}})")), "response_format");
}

TEST(OutputRequest, VllmsGuidedFields) {
  auto json = Chat(R"("guided_json":{"type":"string"})");
  EXPECT_EQ(json->structured.kind, Kind::kJsonSchema);
  EXPECT_EQ(json->structured.text, R"({"type":"string"})");
  auto text = Chat(R"("guided_json":"{\"type\": \"string\"}")");  // a schema's text
  EXPECT_EQ(text->structured.text, R"({"type":"string"})");
  EXPECT_EQ(BadParam(Chat(R"("guided_json":"{oops")")), "guided_json");
  auto regex = Chat(R"("guided_regex":"[a-z]+")");
  EXPECT_EQ(regex->structured.kind, Kind::kRegex);
  EXPECT_EQ(regex->structured.text, "[a-z]+");
  auto choice = Chat(R"("guided_choice":["yes","no"],"guided_decoding_backend":"xgrammar")");
  EXPECT_EQ(choice->structured.kind, Kind::kChoice);
  EXPECT_EQ(choice->structured.choices, (std::vector<std::string>{"yes", "no"}));
  EXPECT_EQ(BadParam(Chat(R"("guided_choice":[])")), "guided_choice");
  EXPECT_EQ(BadParam(Chat(R"("guided_choice":["a",1])")), "guided_choice");
  EXPECT_EQ(BadParam(Chat(R"("guided_grammar":"root ::= \"a\"")")), "guided_grammar");
  EXPECT_EQ(BadParam(Chat(R"("guided_whitespace_pattern":" ")")), "guided_whitespace_pattern");
}

TEST(OutputRequest, StructuredOutputsTakeOneKind) {
  EXPECT_EQ(Chat(R"("structured_outputs":{"json":{"type":"null"}})")->structured.kind, Kind::kJsonSchema);
  EXPECT_EQ(Chat(R"("structured_outputs":{"regex":"a"})")->structured.kind, Kind::kRegex);
  EXPECT_EQ(Chat(R"("structured_outputs":{"choice":["a"]})")->structured.kind, Kind::kChoice);
  auto obj = Chat(R"("structured_outputs":{"json_object":true})");
  EXPECT_EQ(obj->structured.kind, Kind::kResponseFormat);
  EXPECT_EQ(obj->structured.text, R"({"type":"json_object"})");
  EXPECT_EQ(Chat(R"("structured_outputs":{"json_object":false})")->structured.kind, Kind::kNone);
  EXPECT_EQ(BadParam(Chat(R"("structured_outputs":{"regex":"a","choice":["b"]})")), "structured_outputs");
  EXPECT_EQ(BadParam(Chat(R"("structured_outputs":{"grammar":"x"})")), "structured_outputs");
}

TEST(OutputRequest, OneFormatPerRequestAndNoIgnoreEos) {
  auto two = Chat(R"("response_format":{"type":"json_object"},"guided_regex":"a")");
  EXPECT_EQ(BadParam(two), "guided_regex");
  EXPECT_NE(two.status().message().find("'response_format'"), std::string::npos);
  EXPECT_EQ(BadParam(Chat(R"("guided_regex":"a","ignore_eos":true)")), "ignore_eos");
  EXPECT_TRUE(Chat(R"("response_format":{"type":"text"},"ignore_eos":true)").ok());
}

TEST(OutputRequest, LogitBias) {
  auto r = Chat(R"("logit_bias":{"50256":-100,"7":2.5})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->logit_bias, (std::vector<std::pair<int32_t, float>>{{50256, -100.f}, {7, 2.5f}}));
  for (const char* bad : {R"("logit_bias":{"7":101})", R"("logit_bias":{"-1":1})",
                          R"("logit_bias":{"x":1})", R"("logit_bias":{"99999999999":1})",
                          R"("logit_bias":{"7":"1"})", R"("logit_bias":[1])"})
    EXPECT_EQ(BadParam(Chat(bad)), "logit_bias") << bad;
}

TEST(OutputRequest, MinTokensAndTheThinkingBudget) {
  auto r = Chat(R"("min_tokens":3,"max_tokens":3,"thinking_token_budget":64)");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->min_tokens, 3u);
  EXPECT_EQ(r->thinking_token_budget, 64);
  EXPECT_EQ(BadParam(Chat(R"("min_tokens":4,"max_tokens":3)")), "min_tokens");
  EXPECT_EQ(BadParam(Chat(R"("min_tokens":-1)")), "min_tokens");
  EXPECT_EQ(Chat(R"("max_reasoning_tokens":0)")->thinking_token_budget, 0);
  EXPECT_EQ(Chat(R"("max_reasoning_tokens":-1)")->thinking_token_budget, -1);
  EXPECT_FALSE(Chat("")->thinking_token_budget.has_value());
  EXPECT_TRUE(Chat(R"("max_reasoning_tokens":5,"thinking_token_budget":5)").ok());
  EXPECT_EQ(BadParam(Chat(R"("max_reasoning_tokens":5,"thinking_token_budget":6)")), "max_reasoning_tokens");
  EXPECT_EQ(BadParam(Chat(R"("thinking_token_budget":-2)")), "thinking_token_budget");
}

TEST(OutputRequest, WorkerErrorsNameTheRequestField) {
  GenParams p = *Chat(R"("guided_json":{"type":"string"})");
  std::string m = "structured_output: json_schema: \"format\" at #/format: this keyword is not supported";
  EXPECT_EQ(ParamOfWorkerError(p, &m), "guided_json");
  EXPECT_EQ(m, "json_schema: \"format\" at #/format: this keyword is not supported");
  m = "logit_bias[999999]: token id 999999 is outside the vocabulary [0, 151936)";
  EXPECT_EQ(ParamOfWorkerError(p, &m), "logit_bias");
  m = "min_tokens: 5 exceeds the model length 4";
  EXPECT_EQ(ParamOfWorkerError(p, &m), "min_tokens");
  m = "prompt: 9 tokens leave no room";
  EXPECT_EQ(ParamOfWorkerError(p, &m), "");
  EXPECT_EQ(m, "prompt: 9 tokens leave no room");
}

}  // namespace
}  // namespace r1::gw
