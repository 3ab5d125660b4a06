#include <gtest/gtest.h>

#include "gateway/openai/request.h"

namespace r1::gw {
namespace {

absl::StatusOr<GenParams> Chat(const std::string& body) {
  return ParseGenRequest(ApiKind::kChat, body);
}
absl::StatusOr<GenParams> Completion(const std::string& body) {
  return ParseGenRequest(ApiKind::kCompletion, body);
}

// The parameter a bad body is blamed on ("" when the whole body is bad).
std::string BadParam(const absl::StatusOr<GenParams>& r) {
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return ParamOf(r.status());
}

TEST(OpenAIRequest, ChatWithEveryParameter) {
  auto r = Chat(R"({"model":"m","messages":[{"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "stream":true,"stream_options":{"include_usage":true},"max_tokens":7,
      "max_completion_tokens":9,"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.05,
      "stop":["x","y"],"seed":42,"presence_penalty":0.1,"frequency_penalty":-0.2,
      "repetition_penalty":1.1,"logprobs":true,"top_logprobs":3,"n":1,"user":"u",
      "store":true,"metadata":{"k":"v"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "ab");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->max_tokens, 9u);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.9f);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r->sampling.min_p, 0.05f);
  EXPECT_EQ(r->stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(r->sampling.seed, 42u);
  EXPECT_FLOAT_EQ(r->sampling.presence_penalty, 0.1f);
  EXPECT_FLOAT_EQ(r->sampling.frequency_penalty, -0.2f);
  EXPECT_FLOAT_EQ(r->sampling.repetition_penalty, 1.1f);
  EXPECT_TRUE(r->sampling.logprobs);
  EXPECT_EQ(r->sampling.top_logprobs, 3);
  EXPECT_EQ(r->user, "u");
}

TEST(OpenAIRequest, Defaults) {
  auto r = Chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":null})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->stream);
  EXPECT_EQ(r->max_tokens, 0u);
  EXPECT_FLOAT_EQ(r->sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 1.0f);
  EXPECT_EQ(r->sampling.top_k, 0);
  EXPECT_FALSE(r->sampling.seed.has_value());
}

TEST(OpenAIRequest, CompletionPromptForms) {
  auto a = Completion(R"({"model":"m","prompt":"hello","stop":"\n","logprobs":2})");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->prompts.size(), 1u);
  EXPECT_EQ(*a->prompts[0].text, "hello");
  EXPECT_EQ(a->stop, std::vector<std::string>{"\n"});
  EXPECT_TRUE(a->sampling.logprobs);
  EXPECT_EQ(a->sampling.top_logprobs, 2);
  auto b = Completion(R"({"model":"m","prompt":["hello"]})");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b->prompts.at(0).text, "hello");
  auto c = Completion(R"({"model":"m","prompt":[1,2,3]})");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->prompts.at(0).text.has_value());
  EXPECT_EQ(c->prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  auto d = Completion(R"({"model":"m","prompt":[[4,5]]})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->prompts.at(0).ids, (std::vector<int32_t>{4, 5}));
  auto e = Completion(R"({"model":"m","prompt":["a","b","c"],"n":2})");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->prompts.size(), 3u);
  EXPECT_EQ(*e->prompts[2].text, "c");
  EXPECT_EQ(e->n, 2u);
  auto f = Completion(R"({"model":"m","prompt":[[1],[2,3]]})");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->prompts[1].ids, (std::vector<int32_t>{2, 3}));
}

TEST(OpenAIRequest, BadInputNamesTheParameter) {
  EXPECT_EQ(BadParam(Chat(R"({"messages":[{"role":"user","content":"x"}]})")), "model");
  EXPECT_EQ(BadParam(Chat(R"({"model":3,"messages":[{"role":"user","content":"x"}]})")), "model");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m"})")), "messages");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m","messages":[]})")), "messages");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m","messages":"hi"})")), "messages");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m","messages":[{"role":"robot","content":"x"}]})")),
            "messages[0].role");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m","messages":[{"role":"user","content":"x"},{"role":"user"}]})")),
            "messages[1].content");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m","messages":[{"role":"user","content":5}]})")),
            "messages[0].content");
  const std::string ok_msgs = R"("model":"m","messages":[{"role":"user","content":"x"}])";
  auto with = [&](const std::string& extra) { return Chat("{" + ok_msgs + "," + extra + "}"); };
  EXPECT_EQ(BadParam(with(R"("temperature":"hot")")), "temperature");
  EXPECT_EQ(BadParam(with(R"("temperature":2.5)")), "temperature");
  EXPECT_EQ(BadParam(with(R"("temperature":-0.1)")), "temperature");
  EXPECT_EQ(BadParam(with(R"("top_p":0)")), "top_p");
  EXPECT_EQ(BadParam(with(R"("top_p":1.5)")), "top_p");
  EXPECT_EQ(BadParam(with(R"("top_k":-2)")), "top_k");
  EXPECT_EQ(BadParam(with(R"("top_k":1.5)")), "top_k");
  EXPECT_EQ(BadParam(with(R"("min_p":2)")), "min_p");
  EXPECT_EQ(BadParam(with(R"("max_tokens":0)")), "max_tokens");
  EXPECT_EQ(BadParam(with(R"("max_tokens":"10")")), "max_tokens");
  EXPECT_EQ(BadParam(with(R"("max_completion_tokens":-1)")), "max_completion_tokens");
  EXPECT_EQ(BadParam(with(R"("presence_penalty":3)")), "presence_penalty");
  EXPECT_EQ(BadParam(with(R"("frequency_penalty":-3)")), "frequency_penalty");
  EXPECT_EQ(BadParam(with(R"("repetition_penalty":0)")), "repetition_penalty");
  EXPECT_EQ(BadParam(with(R"("stop":5)")), "stop");
  EXPECT_EQ(BadParam(with(R"("stop":[""])")), "stop");
  EXPECT_EQ(BadParam(with(R"("stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"])")),
            "stop");
  EXPECT_EQ(BadParam(with(R"("seed":-1)")), "seed");
  EXPECT_EQ(BadParam(with(R"("seed":"1")")), "seed");
  EXPECT_EQ(BadParam(with(R"("stream":"yes")")), "stream");
  EXPECT_EQ(BadParam(with(R"("stream_options":1)")), "stream_options");
  EXPECT_EQ(BadParam(with(R"("logprobs":1)")), "logprobs");
  EXPECT_EQ(BadParam(with(R"("top_logprobs":3)")), "top_logprobs");  // without logprobs
  EXPECT_EQ(BadParam(with(R"("logprobs":true,"top_logprobs":21)")), "top_logprobs");
  EXPECT_EQ(BadParam(with(R"("n":65)")), "n");
  EXPECT_EQ(BadParam(with(R"("n":0)")), "n");
  EXPECT_EQ(BadParam(with(R"("n":1.5)")), "n");
  EXPECT_TRUE(with(R"("n":4)").ok());
  EXPECT_EQ(BadParam(with(R"("user":1)")), "user");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m"})")), "prompt");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":[]})")), "prompt");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":{}})")), "prompt");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":[1,-2]})")), "prompt");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":["a",[1]]})")), "prompt");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":[[1],[]]})")), "prompt");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":["a","b"],"n":40})")), "n");
  EXPECT_EQ(BadParam(Completion(R"({"model":"m","prompt":"x","logprobs":6})")), "logprobs");
}

TEST(OpenAIRequest, MalformedBodies) {
  EXPECT_EQ(BadParam(Chat("")), "");
  EXPECT_EQ(BadParam(Chat("{")), "");
  EXPECT_EQ(BadParam(Chat("[1,2]")), "");
  EXPECT_EQ(BadParam(Chat(R"({"model":"m",})")), "");
  EXPECT_EQ(BadParam(Chat("{\"model\":\"\xff\xfe\"}")), "");  // not UTF-8
  std::string deep(200, '[');
  EXPECT_EQ(BadParam(Chat(deep)), "");
}

TEST(OpenAIRequest, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // cut short
}

TEST(OpenAIRequest, EveryFieldIsKnownOrRefused) {
  auto chat = [](const std::string& extra) {
    return ParseGenRequest(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}])" +
                                               (extra.empty() ? "" : "," + extra) + "}");
  };
  auto unknown = chat(R"("temprature":1)");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(ParamOf(unknown.status()), "temprature");
  ParseOptions lax;
  lax.ignore_unknown_fields = true;
  auto ignored = ParseGenRequest(
      ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"zz":1})", lax);
  ASSERT_TRUE(ignored.ok());
  EXPECT_EQ(ignored->ignored_fields, std::vector<std::string>{"zz"});
  EXPECT_EQ(ParamOf(chat(R"("best_of":2)").status()), "best_of");
  EXPECT_TRUE(chat(R"("best_of":1,"store":true,"metadata":{"a":"b"},"service_tier":"auto")").ok());
  EXPECT_EQ(ParamOf(chat(R"("echo":true)").status()), "echo");  // completions only
  EXPECT_TRUE(chat(R"("response_format":{"type":"text"},"logit_bias":{"1":2})").ok());
  auto defaults = chat("");
  EXPECT_FALSE(defaults->temperature_set);
  EXPECT_TRUE(defaults->include_reasoning);
  EXPECT_FALSE(chat(R"("include_reasoning":false)")->include_reasoning);
  auto suffix = ParseGenRequest(ApiKind::kCompletion, R"({"model":"m","prompt":"x","suffix":"y"})");
  EXPECT_EQ(ParamOf(suffix.status()), "suffix");
}

TEST(OpenAIRequest, ToolsAndToolMessages) {
  const std::string tools =
      R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}])";
  auto chat = [](const std::string& messages, const std::string& extra) {
    return ParseGenRequest(ApiKind::kChat, R"({"model":"m","messages":)" + messages + "," + extra + "}");
  };
  const std::string history =
      R"([{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"21"}])";
  auto r = chat(history, tools);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tool_choice, ToolChoice::kAuto);
  EXPECT_FALSE(r->messages[1].has_content);
  EXPECT_EQ(r->messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(r->messages[2].tool_call_id, "c1");
  EXPECT_EQ(ParamOf(chat(history, tools + R"(,"tool_choice":"required")").status()), "tool_choice");
  EXPECT_EQ(ParamOf(chat(history, R"("tool_choice":"auto")").status()), "tool_choice");
  EXPECT_EQ(ParamOf(chat(history, R"("tools":[{"type":"function","function":{"name":"bad name"}}])").status()),
            "tools[0]");
  EXPECT_TRUE(chat(history, tools + R"(,"tool_choice":"none","parallel_tool_calls":false)").ok());
}

}  // namespace
}  // namespace r1::gw
