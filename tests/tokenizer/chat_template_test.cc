// Chat templates against transformers' apply_chat_template renderings (chat.json, and
// chat_llama.json for the DeepSeek-R1-Distill-Llama tokenizer), template recognition and
// --chat-template resolution.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

#include "tests/tokenizer/test_util.h"
#include "worker/tokenizer/chat_template.h"

namespace r1::tokenizer::testing {
namespace {

namespace json = boost::json;

std::vector<ChatMessage> Messages(const json::value& v) {
  std::vector<ChatMessage> out;
  for (const auto& m : v.as_array()) {
    out.push_back({std::string(m.at("role").as_string()), std::string(m.at("content").as_string())});
  }
  return out;
}

std::vector<std::string>& TempDirs() {
  static auto* dirs = new std::vector<std::string>();
  return *dirs;
}
void RemoveTempDirs() {
  for (const auto& d : TempDirs()) std::filesystem::remove_all(d);
}

// A temporary directory, removed when the test program exits.
std::string MakeDir() {
  static const bool registered = (std::atexit(RemoveTempDirs), true);
  (void)registered;
  char tmpl[] = "/tmp/r1_chat_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  TempDirs().push_back(dir);
  return dir;
}

void WriteConfig(const std::string& dir, const json::value& cfg) {
  FILE* f = std::fopen((dir + "/tokenizer_config.json").c_str(), "w");
  std::string s = json::serialize(cfg);
  std::fwrite(s.data(), 1, s.size(), f);
  std::fclose(f);
}

TEST(TokChatTemplate, TemplateTextIsTheReference) {
  json::value chat = ReadJson(FixtureDir() + "/chat.json");
  EXPECT_EQ(std::string(kDeepSeekR1TemplateText), std::string(chat.at("deepseek_r1_template").as_string()));
  EXPECT_EQ(std::string(kChatMLTemplateText), std::string(chat.at("chatml_template").as_string()));
  EXPECT_TRUE(chat.at("demo_config_template_equals_reference").as_bool());
}

TEST(TokChatTemplate, RenderingsEqualTransformers) {
  json::value chat = ReadJson(FixtureDir() + "/chat.json");
  int checked = 0;
  for (const auto& c : chat.at("conversations").as_array()) {
    auto msgs = Messages(c.at("messages"));
    const auto& renders = c.at("renders").as_object();
    for (const auto& [t, name] : {std::pair{ChatTemplate::kDeepSeekR1, "deepseek-r1"},
                                  std::pair{ChatTemplate::kChatML, "chatml"}}) {
      for (bool gen : {false, true}) {
        std::string key = std::string(name) + (gen ? "/gen" : "/nogen");
        auto got = RenderChat(t, msgs, gen);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(*got, std::string(renders.at(key).as_string()))
            << c.at("name").as_string().c_str() << " " << key;
        ++checked;
      }
    }
    // The demo model's own template, as transformers loads it from tokenizer_config.json.
    EXPECT_EQ(*RenderChat(ChatTemplate::kDeepSeekR1, msgs, true),
              std::string(renders.at("demo-config/gen").as_string()));
    // Token ids of the rendered prompt under the demo tokenizer.
    const auto& ids = c.at("ids").at("deepseek-r1/gen").as_array();
    std::vector<int32_t> want;
    for (const auto& x : ids) want.push_back(static_cast<int32_t>(x.as_int64()));
    EXPECT_EQ(*Demo().Encode(*RenderChat(ChatTemplate::kDeepSeekR1, msgs, true)), want);
  }
  EXPECT_GE(checked, 40);
}

TEST(TokChatTemplate, GenerationPromptOpensThink) {
  auto s = RenderChat(ChatTemplate::kDeepSeekR1, {{"user", "hi"}}, true);
  EXPECT_EQ(*s, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\n");
  auto c = RenderChat(ChatTemplate::kChatML, {{"user", "hi"}}, true);
  EXPECT_EQ(*c, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

// Tool calls, tool outputs and a tools list: DeepSeek-R1's template as Jinja2 renders it with
// transformers' settings (chat_tools.json, tests/fixtures/make_tool_template_fixtures.py).
TEST(TokChatTemplate, ToolConversationsEqualJinja) {
  json::value fixture = ReadJson(FixtureDir() + "/chat_tools.json");
  int checked = 0;
  for (const auto& c : fixture.at("conversations").as_array()) {
    std::vector<ChatMessage> msgs;
    for (const auto& mv : c.at("messages").as_array()) {
      const json::object& m = mv.as_object();
      ChatMessage msg;
      msg.role = std::string(m.at("role").as_string());
      msg.has_content = !m.at("content").is_null();
      if (msg.has_content) msg.content = std::string(m.at("content").as_string());
      if (const json::value* calls = m.if_contains("tool_calls")) {
        for (const auto& call : calls->as_array()) {
          const json::object& fn = call.at("function").as_object();
          msg.tool_calls.push_back({std::string(call.at("type").as_string()),
                                    std::string(fn.at("name").as_string()),
                                    std::string(fn.at("arguments").as_string())});
        }
      }
      msgs.push_back(std::move(msg));
    }
    const std::string tools = json::serialize(c.at("tools"));
    for (bool gen : {true, false}) {
      auto r = RenderChat(ChatTemplate::kDeepSeekR1, msgs, gen, tools);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(*r, std::string(c.at("renders").at(gen ? "deepseek-r1/gen" : "deepseek-r1/nogen")
                                    .as_string()))
          << c.at("name").as_string();
      ++checked;
    }
  }
  EXPECT_EQ(checked, 8);
}

TEST(TokChatTemplate, ChatMLHasNoToolSupport) {
  EXPECT_TRUE(SupportsTools(ChatTemplate::kDeepSeekR1));
  EXPECT_FALSE(SupportsTools(ChatTemplate::kChatML));
  auto r = RenderChat(ChatTemplate::kChatML, {{"user", "hi"}}, true, R"([{"type":"function"}])");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("tools"), absl::string_view::npos);
  ChatMessage calls_only;
  calls_only.role = "assistant";
  calls_only.has_content = false;
  EXPECT_FALSE(RenderChat(ChatTemplate::kChatML, {{"user", "hi"}, calls_only}, true).ok());
}

TEST(TokChatTemplate, BadRoleIsInvalidArgument) {
  for (ChatTemplate t : {ChatTemplate::kDeepSeekR1, ChatTemplate::kChatML}) {
    auto r = RenderChat(t, {{"user", "a"}, {"wizard", "b"}}, true);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("wizard"), absl::string_view::npos);
  }
}

TEST(TokChatTemplate, ResolveByFlagAndByDemoConfig) {
  EXPECT_EQ(*ResolveChatTemplate("deepseek-r1", "/nonexistent"), ChatTemplate::kDeepSeekR1);
  EXPECT_EQ(*ResolveChatTemplate("chatml", "/nonexistent"), ChatTemplate::kChatML);
  EXPECT_EQ(*ResolveChatTemplate("auto", DemoDir()), ChatTemplate::kDeepSeekR1);
  // The npm Qwen3 tokenizer_config.json carries a ChatML template.
  EXPECT_EQ(*ResolveChatTemplate("auto", SourceDir() + "/.cache/tokenizer"), ChatTemplate::kChatML);
  auto bad = ResolveChatTemplate("llama", DemoDir());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--chat-template"), absl::string_view::npos);
}

TEST(TokChatTemplate, UnrecognisedOrMissingTemplateNamesTheFlag) {
  std::string dir = MakeDir();
  auto missing = ResolveChatTemplate("auto", dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--chat-template"), absl::string_view::npos);

  WriteConfig(dir, json::value{{"chat_template", "{% for m in messages %}[INST]{{ m.content }}{% endfor %}"}});
  auto unknown = ResolveChatTemplate("auto", dir);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("--chat-template"), absl::string_view::npos);

  WriteConfig(dir, json::value{{"bos_token", "x"}});
  auto none = ResolveChatTemplate("auto", dir);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("--chat-template"), absl::string_view::npos);

  WriteConfig(dir, json::value{{"chat_template", kChatMLTemplateText}});
  EXPECT_EQ(*ResolveChatTemplate("auto", dir), ChatTemplate::kChatML);
}

// DeepSeek-R1-Distill-Llama: the same DeepSeek-R1 template (its tokenizer_config.json carries
// it), rendered to text that the distill's tokenizer reads with DeepSeek's tokens in Llama ids.
TEST(TokChatTemplateLlama, RenderingsAndIdsEqualTransformers) {
  const std::string path = FixtureDir() + "/chat_llama.json";
  if (std::string why = MissingLlamaFixture(path); !why.empty()) GTEST_FAIL() << why;
  json::value chat = ReadJson(path);
  EXPECT_EQ(chat.at("bos_token").as_string(), "<｜begin▁of▁sentence｜>");
  int checked = 0;
  for (const auto& c : chat.at("conversations").as_array()) {
    auto msgs = Messages(c.at("messages"));
    const auto& renders = c.at("renders").as_object();
    const std::string name(c.at("name").as_string());
    for (bool gen : {false, true}) {
      auto got = RenderChat(ChatTemplate::kDeepSeekR1, msgs, gen);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, std::string(renders.at(gen ? "deepseek-r1/gen" : "deepseek-r1/nogen").as_string()))
          << name;
      ++checked;
    }
    std::string prompt = *RenderChat(ChatTemplate::kDeepSeekR1, msgs, true);
    EXPECT_EQ(prompt, std::string(renders.at("distill-config/gen").as_string())) << name;
    std::vector<int32_t> want;
    for (const auto& x : c.at("ids").at("deepseek-r1/gen").as_array())
      want.push_back(static_cast<int32_t>(x.as_int64()));
    EXPECT_EQ(*LlamaDistill().Encode(prompt), want) << name;
  }
  EXPECT_GE(checked, 20);
}

TEST(TokChatTemplateLlama, DistillConfigIsRecognisedAndItsMarkersAreSingleTokens) {
  EXPECT_EQ(*ResolveChatTemplate("auto", LlamaDistillDir()), ChatTemplate::kDeepSeekR1);
  const Tokenizer& t = LlamaDistill();
  auto ids = t.Encode(*RenderChat(ChatTemplate::kDeepSeekR1, {{"user", "hi"}}, true));
  ASSERT_TRUE(ids.ok());
  const std::vector<int32_t> hi = *t.Encode("hi"), newline = *t.Encode("\n");
  std::vector<int32_t> want = {*t.TokenToId("<｜begin▁of▁sentence｜>"), *t.TokenToId("<｜User｜>")};
  want.insert(want.end(), hi.begin(), hi.end());
  want.push_back(*t.TokenToId("<｜Assistant｜>"));
  want.push_back(*t.TokenToId("<think>"));
  want.insert(want.end(), newline.begin(), newline.end());
  EXPECT_EQ(*ids, want);
}

}  // namespace
}  // namespace r1::tokenizer::testing
