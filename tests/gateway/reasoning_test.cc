#include <gtest/gtest.h>

#include "gateway/openai/reasoning.h"

namespace r1::gw {
namespace {

// Feeds `pieces` one at a time; returns the joined reasoning and content.
std::pair<std::string, std::string> SplitAll(bool enabled, const std::vector<std::string>& pieces) {
  ReasoningSplitter s(enabled);
  std::string r, c;
  for (const auto& p : pieces) {
    SplitText t = s.Feed(p);
    r += t.reasoning;
    c += t.content;
  }
  SplitText t = s.Finish();
  return {r + t.reasoning, c + t.content};
}

TEST(ReasoningSplit, WholeText) {
  EXPECT_EQ(SplitAll(true, {"I think</think>The answer"}),
            std::make_pair(std::string("I think"), std::string("The answer")));
}

TEST(ReasoningSplit, EndTagSplitAcrossEveryBoundary) {
  const std::string text = "abc</think>def";
  for (size_t i = 0; i <= text.size(); ++i) {
    for (size_t j = i; j <= text.size(); ++j) {
      auto got = SplitAll(true, {text.substr(0, i), text.substr(i, j - i), text.substr(j)});
      EXPECT_EQ(got.first, "abc") << i << "," << j;
      EXPECT_EQ(got.second, "def") << i << "," << j;
    }
  }
}

TEST(ReasoningSplit, OpeningTagDropped) {
  EXPECT_EQ(SplitAll(true, {"<think>", "hmm", "</think>", "ok"}),
            std::make_pair(std::string("hmm"), std::string("ok")));
  EXPECT_EQ(SplitAll(true, {"<th", "ink>hmm</think>ok"}),
            std::make_pair(std::string("hmm"), std::string("ok")));
}

TEST(ReasoningSplit, OpeningTagAtTheVeryEndDropped) {
  EXPECT_EQ(SplitAll(true, {"x<think>"}), std::make_pair(std::string("x"), std::string("")));
}

TEST(ReasoningSplit, NoEndTagMeansAllReasoning) {
  // As vLLM's deepseek_r1 parser: output without "</think>" is reasoning (cut off early).
  EXPECT_EQ(SplitAll(true, {"still ", "thinking <"}),
            std::make_pair(std::string("still thinking <"), std::string("")));
}

TEST(ReasoningSplit, LaterTagsAreContent) {
  EXPECT_EQ(SplitAll(true, {"a</think>b</think>c"}),
            std::make_pair(std::string("a"), std::string("b</think>c")));
}

TEST(ReasoningSplit, Disabled) {
  EXPECT_EQ(SplitAll(false, {"a</think>", "b"}),
            std::make_pair(std::string(""), std::string("a</think>b")));
}

TEST(ReasoningSplit, StreamsWithoutWaitingForTheEnd) {
  ReasoningSplitter s(true);
  EXPECT_EQ(s.Feed("Let me").reasoning, "Let me");
  EXPECT_EQ(s.Feed(" see </th").reasoning, " see ");  // "</th" held back
  SplitText t = s.Feed("ink>Yes");
  EXPECT_EQ(t.reasoning, "");
  EXPECT_EQ(t.content, "Yes");
  EXPECT_TRUE(s.saw_end());
}

}  // namespace
}  // namespace r1::gw
