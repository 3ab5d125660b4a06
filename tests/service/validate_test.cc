#include "worker/service/validate.h"

#include <gtest/gtest.h>

namespace r1::service {
namespace {

using r1serve::v1::GenerateRequest;

// Encodes text as one id per byte; renders chat as "role:content|...".
class ByteCodec : public PromptCodec {
 public:
  absl::StatusOr<std::vector<int32_t>> EncodeText(const std::string& text) override {
    if (text == "bad") return absl::InvalidArgumentError("not UTF-8");
    return std::vector<int32_t>(text.begin(), text.end());
  }
  absl::StatusOr<std::vector<int32_t>> EncodeChat(const std::vector<ChatTurn>& chat,
                                                  const std::string& tools_json) override {
    std::string s;
    for (const ChatTurn& t : chat) s += t.role + ":" + t.content + "|";
    return EncodeText(s + tools_json);
  }
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) override {
    return std::string(ids.begin(), ids.end());
  }
  std::shared_ptr<engine::TextCodec> text_codec() override { return nullptr; }
  std::string chat_template_name() const override { return "bytes"; }
  bool supports_tools() const override { return false; }
};

const RequestLimits kLimits{/*max_model_len=*/32, /*vocab_size=*/1000};

TEST(Validate, DefaultsMeanGreedyWithFiltersOff) {
  GenerateRequest req;
  req.mutable_token_ids()->add_ids(5);
  auto r = ToEngineRequest(req, kLimits, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt, std::vector<int32_t>{5});
  EXPECT_EQ(r->sampling.temperature, 0.f);
  EXPECT_EQ(r->sampling.top_p, 1.f);
  EXPECT_EQ(r->sampling.repetition_penalty, 1.f);
  EXPECT_FALSE(r->sampling.seed.has_value());
  EXPECT_EQ(r->max_tokens, 0);
}

// Unset temperature, top_p and top_k: generation_config.json's, then the request's defaults,
// then the proto's zero; set ones win.
TEST(Validate, SamplingDefaultsAreLayered) {
  RequestLimits limits = kLimits;
  limits.generation.temperature = 0.6f;
  limits.generation.top_p = 0.95f;
  GenerateRequest req;
  req.mutable_token_ids()->add_ids(5);
  req.mutable_defaults()->set_temperature(1.f);
  req.mutable_defaults()->set_top_k(7);
  auto r = ToEngineRequest(req, limits, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.95f);
  EXPECT_EQ(r->sampling.top_k, 7);
  req.mutable_sampling()->set_temperature(0.f);  // set: greedy, whatever the defaults
  r = ToEngineRequest(req, limits, nullptr);
  EXPECT_EQ(r->sampling.temperature, 0.f);
  r = ToEngineRequest(req, kLimits, nullptr);  // no generation defaults
  EXPECT_EQ(r->sampling.temperature, 0.f);
  req.mutable_sampling()->clear_temperature();
  r = ToEngineRequest(req, kLimits, nullptr);
  EXPECT_FLOAT_EQ(r->sampling.temperature, 1.f);
}

TEST(Validate, ToolsNeedATemplateWithToolSupport) {
  GenerateRequest req;
  auto* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  req.mutable_chat()->set_tools_json("[]");
  ByteCodec codec;
  auto r = ToEngineRequest(req, kLimits, &codec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tools"), absl::string_view::npos);
  EXPECT_NE(r.status().message().find("bytes"), absl::string_view::npos);
}

TEST(Validate, CopiesEveryField) {
  GenerateRequest req;
  req.set_request_id("abc");
  req.mutable_token_ids()->add_ids(1);
  auto* s = req.mutable_sampling();
  s->set_temperature(0.7f);
  s->set_top_p(0.9f);
  s->set_top_k(40);
  s->set_min_p(0.05f);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(-0.5f);
  s->set_seed(42);
  req.set_max_tokens(10);
  req.add_stop("\n\n");
  req.add_stop_token_ids(7);
  req.set_ignore_eos(true);
  req.set_top_logprobs(3);
  ByteCodec codec;
  auto r = ToEngineRequest(req, kLimits, &codec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, "abc");
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.9f);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r->sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r->sampling.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(r->sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.frequency_penalty, -0.5f);
  ASSERT_TRUE(r->sampling.seed.has_value());
  EXPECT_EQ(*r->sampling.seed, 42u);
  EXPECT_EQ(r->max_tokens, 10);
  EXPECT_EQ(r->stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(r->stop_token_ids, std::vector<int32_t>{7});
  EXPECT_TRUE(r->ignore_eos);
  EXPECT_TRUE(r->sampling.logprobs);  // top_logprobs implies logprobs
  EXPECT_EQ(r->sampling.top_logprobs, 3);
}

TEST(Validate, TextAndChatPromptsGoThroughTheCodec) {
  ByteCodec codec;
  GenerateRequest req;
  req.set_text("hi");
  auto r = ToEngineRequest(req, kLimits, &codec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prompt, (std::vector<int32_t>{'h', 'i'}));

  GenerateRequest chat;
  auto* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("x");
  r = ToEngineRequest(chat, kLimits, &codec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::string(r->prompt.begin(), r->prompt.end()), "user:x|");

  req.set_text("bad");
  r = ToEngineRequest(req, kLimits, &codec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "prompt.text: not UTF-8");
}

TEST(Validate, PromptMustLeaveRoomForOneToken) {
  GenerateRequest req;
  for (int i = 0; i < 31; ++i) req.mutable_token_ids()->add_ids(1);
  EXPECT_TRUE(ToEngineRequest(req, kLimits, nullptr).ok());
  req.mutable_token_ids()->add_ids(1);
  auto r = ToEngineRequest(req, kLimits, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(r.status().message()).rfind("prompt: 32 tokens", 0), 0u)
      << r.status().message();
}

TEST(Validate, ResumeCarriesTheDeliveredOutput) {
  GenerateRequest req;
  req.mutable_token_ids()->add_ids(5);
  for (int32_t id : {7, 8, 9}) req.mutable_resume()->add_output_token_ids(id);
  req.set_max_tokens(4);
  auto r = ToEngineRequest(req, kLimits, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resume_output, (std::vector<int32_t>{7, 8, 9}));
  EXPECT_EQ(r->max_tokens, 4);  // new tokens
  // min_tokens counts the delivered tokens too: 7 in all may be made.
  req.set_min_tokens(7);
  EXPECT_TRUE(ToEngineRequest(req, kLimits, nullptr).ok());
  req.set_min_tokens(8);
  auto over = ToEngineRequest(req, kLimits, nullptr);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("min_tokens"), std::string::npos) << over.status();
  req.clear_min_tokens();
  // Ids outside the vocabulary, and output that leaves no room, are refused by name.
  req.mutable_resume()->add_output_token_ids(1000);
  auto bad = ToEngineRequest(req, kLimits, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("resume.output_token_ids[3]"), std::string::npos);
  req.mutable_resume()->clear_output_token_ids();
  for (int i = 0; i < 31; ++i) req.mutable_resume()->add_output_token_ids(1);  // 1 + 31 = 32
  auto full = ToEngineRequest(req, kLimits, nullptr);
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.status().message().find("leave no room"), std::string::npos) << full.status();
}

}  // namespace
}  // namespace r1::service
