#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "gateway/openai/response.h"

namespace r1::gw {
namespace {
namespace json = boost::json;

json::value Parse(const std::string& s) {
  boost::system::error_code ec;
  json::value v = json::parse(s, ec);
  EXPECT_FALSE(ec) << s;
  return v;
}

TEST(OpenAIResponse, JsonStringEscaping) {
  std::string out;
  AppendJsonString(&out, std::string("a\"b\\c\n\t\x01\x1f", 9) + "é");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001fé\"");
  EXPECT_EQ(Parse(out).as_string(), std::string("a\"b\\c\n\t\x01\x1f", 9) + "é");
}

TEST(OpenAIResponse, ErrorShape) {
  json::value v = Parse(ErrorJson("bad \"x\"", "invalid_request_error", "temperature", ""));
  EXPECT_EQ(v.at("error").at("message").as_string(), "bad \"x\"");
  EXPECT_EQ(v.at("error").at("type").as_string(), "invalid_request_error");
  EXPECT_EQ(v.at("error").at("param").as_string(), "temperature");
  EXPECT_TRUE(v.at("error").at("code").is_null());
}

TEST(OpenAIResponse, ChatChunks) {
  ResponseMeta meta{ApiKind::kChat, "chatcmpl-1", 123, "m", true};
  json::value first = Parse(ChatChunk(meta, 0, true, {"", ""}, nullptr, ""));
  EXPECT_EQ(first.at("object").as_string(), "chat.completion.chunk");
  EXPECT_EQ(first.at("choices").at(0).at("delta").at("role").as_string(), "assistant");
  EXPECT_EQ(first.at("choices").at(0).at("delta").at("content").as_string(), "");
  EXPECT_TRUE(first.at("choices").at(0).at("finish_reason").is_null());
  EXPECT_TRUE(first.at("usage").is_null());
  json::value mid = Parse(ChatChunk(meta, 0, false, {"why", "so"}, nullptr, ""));
  EXPECT_EQ(mid.at("choices").at(0).at("delta").at("reasoning_content").as_string(), "why");
  EXPECT_EQ(mid.at("choices").at(0).at("delta").at("content").as_string(), "so");
  EXPECT_FALSE(mid.at("choices").at(0).at("delta").as_object().contains("role"));
  json::value last = Parse(ChatChunk(meta, 0, false, {}, nullptr, "length"));
  EXPECT_EQ(last.at("choices").at(0).at("finish_reason").as_string(), "length");
  EXPECT_TRUE(last.at("choices").at(0).at("delta").as_object().empty());
  json::value usage = Parse(UsageChunk(meta, {5, 7}));
  EXPECT_TRUE(usage.at("choices").as_array().empty());
  EXPECT_EQ(usage.at("usage").at("total_tokens").as_int64(), 12);
}

TEST(OpenAIResponse, WholeResponses) {
  ResponseMeta meta{ApiKind::kChat, "chatcmpl-1", 123, "m", false};
  std::vector<LogprobEntry> lps = {{"a", -0.5, {{"a", -0.5}, {"b", -1.5}}}};
  json::value chat = Parse(ChatResponse(meta, true, {{"think", "answer", &lps, "stop"}}, {3, 1}));
  auto& msg = chat.at("choices").at(0).at("message");
  EXPECT_EQ(msg.at("content").as_string(), "answer");
  EXPECT_EQ(msg.at("reasoning_content").as_string(), "think");
  auto& lp = chat.at("choices").at(0).at("logprobs").at("content").at(0);
  EXPECT_EQ(lp.at("token").as_string(), "a");
  EXPECT_DOUBLE_EQ(lp.at("logprob").as_double(), -0.5);
  EXPECT_EQ(lp.at("bytes").at(0).as_int64(), 97);
  EXPECT_EQ(lp.at("top_logprobs").as_array().size(), 2u);
  EXPECT_EQ(chat.at("usage").at("completion_tokens").as_int64(), 1);
  EXPECT_EQ(chat.at("usage").at("completion_tokens_details").at("reasoning_tokens").as_int64(), 0);
  json::value thought = Parse(ChatResponse(meta, true, {{"t", "a", nullptr, "stop"}}, {3, 9, 7}));
  EXPECT_EQ(thought.at("usage").at("completion_tokens_details").at("reasoning_tokens").as_int64(), 7);
  // Without an answer after the reasoning, content is null (as vLLM).
  json::value only = Parse(ChatResponse(meta, true, {{"think", "", nullptr, "length"}}, {1, 1}));
  EXPECT_TRUE(only.at("choices").at(0).at("message").at("content").is_null());
  // With the split off there is no reasoning_content at all.
  json::value plain = Parse(ChatResponse(meta, false, {{"", "all", nullptr, "stop"}}, {1, 1}));
  EXPECT_FALSE(plain.at("choices").at(0).at("message").as_object().contains("reasoning_content"));

  meta.kind = ApiKind::kCompletion;
  json::value comp = Parse(CompletionResponse(meta, {{"", "ab", &lps, "stop"}}, {1, 1}));
  EXPECT_EQ(comp.at("object").as_string(), "text_completion");
  EXPECT_EQ(comp.at("choices").at(0).at("text").as_string(), "ab");
  auto& clp = comp.at("choices").at(0).at("logprobs");
  EXPECT_EQ(clp.at("tokens").at(0).as_string(), "a");
  EXPECT_DOUBLE_EQ(clp.at("top_logprobs").at(0).at("b").as_double(), -1.5);
  EXPECT_EQ(clp.at("text_offset").at(0).as_int64(), 0);
}

TEST(OpenAIResponse, SeveralChoices) {
  ResponseMeta meta{ApiKind::kCompletion, "cmpl-1", 1, "m", false};
  json::value v = Parse(CompletionResponse(meta, {{"", "a", nullptr, "stop"}, {"", "b", nullptr, "length"}}, {2, 3}));
  ASSERT_EQ(v.at("choices").as_array().size(), 2u);
  EXPECT_EQ(v.at("choices").at(1).at("index").as_int64(), 1);
  EXPECT_EQ(v.at("choices").at(1).at("text").as_string(), "b");
  EXPECT_EQ(v.at("choices").at(1).at("finish_reason").as_string(), "length");
  json::value chunk = Parse(CompletionChunk(meta, 3, "x", nullptr, 0, ""));
  EXPECT_EQ(chunk.at("choices").at(0).at("index").as_int64(), 3);
}

TEST(OpenAIResponse, ModelsAndSse) {
  ModelCard a, b;
  a.id = "a";
  b.id = "b";
  b.max_model_len = 4096;
  b.generation_defaults_json = R"({"source":"generation_config.json","temperature":0.6})";
  b.chat_template = "deepseek-r1";
  b.tools = true;
  json::value v = Parse(ModelsResponse({a, b}, 1));
  EXPECT_EQ(v.at("data").as_array().size(), 2u);
  EXPECT_EQ(v.at("data").at(1).at("id").as_string(), "b");
  EXPECT_TRUE(v.at("data").at(0).at("generation_defaults").is_null());
  EXPECT_EQ(v.at("data").at(1).at("generation_defaults").at("temperature").as_double(), 0.6);
  EXPECT_EQ(v.at("data").at(1).at("max_model_len").as_int64(), 4096);
  EXPECT_TRUE(v.at("data").at(1).at("tools").as_bool());
  EXPECT_EQ(SseData("{}"), "data: {}\n\n");
}

}  // namespace
}  // namespace r1::gw
