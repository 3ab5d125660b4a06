#include "worker/engine/stop_checker.h"

#include <gtest/gtest.h>

namespace r1::engine {
namespace {

TEST(StopChecker, NoStopsPassesTextThrough) {
  StopChecker s;
  EXPECT_EQ(s.Add("hello").text, "hello");
  EXPECT_EQ(s.Flush(), "");
}

TEST(StopChecker, HoldsBackPossibleStartAndDropsStopText) {
  StopChecker s({"END"});
  auto r = s.Add("abc E");
  EXPECT_EQ(r.text, "abc ");
  EXPECT_EQ(r.matched, -1);
  r = s.Add("N");
  EXPECT_EQ(r.text, "");
  r = s.Add("Dxyz");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.matched, 0);
}

TEST(StopChecker, ReleasesHeldTextWhenItIsNotAStop) {
  StopChecker s({"END"});
  EXPECT_EQ(s.Add("E").text, "");
  EXPECT_EQ(s.Add("Nx").text, "ENx");
  EXPECT_EQ(s.Add("EN").text, "");
  EXPECT_EQ(s.Flush(), "EN");
}

TEST(StopChecker, EarliestStopWins) {
  StopChecker s({"cd", "b"});
  auto r = s.Add("abcd");
  EXPECT_EQ(r.text, "a");
  EXPECT_EQ(r.matched, 1);
}

TEST(StopChecker, StopInsideOneChunk) {
  StopChecker s({"\n\n"});
  auto r = s.Add("line one\n\nline two");
  EXPECT_EQ(r.text, "line one");
  EXPECT_EQ(r.matched, 0);
}

TEST(StopChecker, MultiByteText) {
  StopChecker s({"é!"});
  EXPECT_EQ(s.Add("café").text, "caf");
  auto r = s.Add("!");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.matched, 0);
}

}  // namespace
}  // namespace r1::engine
