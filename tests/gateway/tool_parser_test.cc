// The tool-call parser on whole outputs and on every split into streamed pieces, against the
// formats vLLM's hermes and deepseek_v3 parsers read.
#include "gateway/openai/tool_parser.h"

#include <gtest/gtest.h>

namespace r1::gw {
namespace {

struct Result {
  std::string content;
  std::vector<ParsedToolCall> calls;
};

Result ParseAll(const std::string& text, size_t piece) {
  int n = 0;
  ToolCallParser p(true, [&n] { return "call_" + std::to_string(n++); });
  Result r;
  for (size_t i = 0; i < text.size(); i += piece) {
    ToolDelta d = p.Feed(text.substr(i, piece));
    r.content += d.content;
    for (auto& c : d.calls) r.calls.push_back(c);
  }
  r.content += p.Finish().content;
  return r;
}

const char kHermes[] =
    "Sure.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>\n"
    "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
const char kDeepSeek[] =
    "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"x\": 1}\n```"
    "<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n```json\n{}\n```"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

TEST(ToolParser, BothFormatsWholeAndInEveryPieceSize) {
  for (const char* text : {kHermes, kDeepSeek}) {
    for (size_t piece : {1000, 1, 2, 3, 5, 7, 13}) {
      Result r = ParseAll(text, piece);
      EXPECT_EQ(r.content, "Sure.") << text << " piece " << piece;
      ASSERT_EQ(r.calls.size(), 2u) << text << " piece " << piece;
      EXPECT_EQ(r.calls[0].name, "f");
      // Hermes' arguments object is re-serialized; DeepSeek's JSON text is kept as written.
      EXPECT_EQ(r.calls[0].arguments, text == kHermes ? "{\"x\":1}" : "{\"x\": 1}");
      EXPECT_EQ(r.calls[0].index, 0);
      EXPECT_EQ(r.calls[0].id, "call_0");
      EXPECT_EQ(r.calls[1].name, "g");
      EXPECT_EQ(r.calls[1].index, 1);
    }
  }
}

TEST(ToolParser, TextWithoutCallsAndBrokenCallsStayContent) {
  EXPECT_EQ(ParseAll("a < b and <tool", 1).content, "a < b and <tool");
  Result broken = ParseAll("x<tool_call>not json</tool_call>", 4);
  EXPECT_EQ(broken.content, "x<tool_call>not json</tool_call>");
  EXPECT_TRUE(broken.calls.empty());
  Result open = ParseAll("x<tool_call>{\"name\": \"f\"", 3);
  EXPECT_EQ(open.content, "x<tool_call>{\"name\": \"f\"");
  ToolCallParser off(false, [] { return std::string(); });
  EXPECT_EQ(off.Feed(kHermes).content, kHermes);
}

}  // namespace
}  // namespace r1::gw
