// The output processor alone: stop ids, EOS, stop strings over detokenized text, length limits,
// log-probabilities and the totals, with a fake detokenizer and hand-set times.
#include "worker/engine/output_processor.h"

#include <gtest/gtest.h>

#include <map>

namespace r1::engine {
namespace {

// Token i decodes to kText[i]; token 9 is the first half of a two-byte character, 10 its end.
const std::map<int32_t, std::string> kText = {{1, "Hello"}, {2, " wor"}, {3, "ld"}, {4, "!"},
                                              {5, " STOP"}, {9, "\xC3"}, {10, "\xA9"}};

class FakeStream : public TextStream {
 public:
  std::string Add(int32_t id) override {
    pending_ += kText.count(id) ? kText.at(id) : "";
    // Hold back an incomplete two-byte character, as the real detokenizer does.
    if (!pending_.empty() && static_cast<unsigned char>(pending_.back()) == 0xC3) {
      std::string out = pending_.substr(0, pending_.size() - 1);
      pending_ = "\xC3";
      return out;
    }
    return std::exchange(pending_, "");
  }
  std::string Finish() override { return std::exchange(pending_, ""); }

 private:
  std::string pending_;
};

class FakeCodec : public TextCodec {
 public:
  std::unique_ptr<TextStream> NewStream() override { return std::make_unique<FakeStream>(); }
  std::string TokenText(int32_t id) override { return kText.count(id) ? kText.at(id) : "?"; }
};

constexpr int32_t kEos = 7;

struct Fixture {
  explicit Fixture(EngineRequest r, int32_t max_model_len = 100)
      : out(OutputConfig{{kEos}, max_model_len, std::make_shared<FakeCodec>()}),
        req(std::move(r), 1, std::make_unique<FakeStream>()) {}
  Delta Feed(int32_t tok, float logprob = 0.f) {
    SampleResult s;
    s.token = tok;
    s.logprob = logprob;
    now += std::chrono::milliseconds(10);
    return out.OnToken(&req, s, now);
  }
  OutputProcessor out;
  RequestState req;
  Clock::TimePoint now{std::chrono::seconds(100)};
};

EngineRequest Req(std::vector<int32_t> prompt = {1, 2}) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.arrival = Clock::TimePoint(std::chrono::seconds(100));
  return r;
}

TEST(OutputProcessor, TextFlowsUntilEos) {
  Fixture f(Req());
  f.req.scheduled_at = f.now + std::chrono::milliseconds(5);
  EXPECT_EQ(f.Feed(1).text, "Hello");
  Delta d = f.Feed(2);
  EXPECT_EQ(d.text, " wor");
  EXPECT_EQ(d.finish, FinishReason::kNone);
  d = f.Feed(kEos);
  EXPECT_EQ(d.finish, FinishReason::kStop);
  EXPECT_EQ(d.text, "");
  EXPECT_EQ(d.prompt_tokens, 2);
  EXPECT_EQ(d.completion_tokens, 3);  // the EOS token counts
  EXPECT_DOUBLE_EQ(d.queued_ms, 5);
  EXPECT_DOUBLE_EQ(d.ttft_ms, 10);
  EXPECT_DOUBLE_EQ(d.total_ms, 30);
  EXPECT_EQ(f.req.tokens, (std::vector<int32_t>{1, 2, 1, 2, kEos}));
}

TEST(OutputProcessor, IgnoreEosKeepsGoing) {
  EngineRequest r = Req();
  r.ignore_eos = true;
  Fixture f(std::move(r));
  EXPECT_EQ(f.Feed(kEos).finish, FinishReason::kNone);
}

TEST(OutputProcessor, StopTokenIdEndsAndNamesItself) {
  EngineRequest r = Req();
  r.stop_token_ids = {4};
  Fixture f(std::move(r));
  f.Feed(1);
  Delta d = f.Feed(4);
  EXPECT_EQ(d.finish, FinishReason::kStop);
  EXPECT_EQ(d.matched_stop, "!");
  EXPECT_EQ(d.text, "");  // a stop token has no text
}

TEST(OutputProcessor, StopStringIsHeldBackAndNeverSent) {
  EngineRequest r = Req();
  r.stop = {" STOP"};
  Fixture f(std::move(r));
  std::string sent = f.Feed(1).text + f.Feed(2).text + f.Feed(3).text;
  Delta d = f.Feed(5);
  sent += d.text;
  EXPECT_EQ(d.finish, FinishReason::kStop);
  EXPECT_EQ(d.matched_stop, " STOP");
  EXPECT_EQ(sent, "Hello world");
}

// include_stop_str_in_output (vLLM): the stop string, or the stop token's text, ends the text.
TEST(OutputProcessor, IncludeStopStrKeepsTheStop) {
  EngineRequest r = Req();
  r.stop = {" STOP"};
  r.include_stop_str_in_output = true;
  Fixture f(std::move(r));
  std::string sent = f.Feed(1).text + f.Feed(2).text + f.Feed(3).text;
  Delta d = f.Feed(5);
  EXPECT_EQ(d.finish, FinishReason::kStop);
  EXPECT_EQ(sent + d.text, "Hello world STOP");

  EngineRequest t = Req();
  t.stop_token_ids = {4};
  t.include_stop_str_in_output = true;
  Fixture g(std::move(t));
  std::string text = g.Feed(9).text;  // half a character, held back
  d = g.Feed(4);
  EXPECT_EQ(d.finish, FinishReason::kStop);
  EXPECT_EQ(text + d.text, "\xC3!");
  EXPECT_EQ(d.matched_stop, "!");
}

TEST(OutputProcessor, LengthLimitsFlushTheHeldBackText) {
  EngineRequest r = Req();
  r.max_tokens = 2;
  Fixture f(std::move(r));
  EXPECT_EQ(f.Feed(1).text, "Hello");
  Delta d = f.Feed(9);  // half a character, then the limit: the byte goes out at the end
  EXPECT_EQ(d.finish, FinishReason::kLength);
  EXPECT_EQ(d.text, "\xC3");
  // The model length ends a sequence too (prompt 2 + 2 outputs = 4).
  Fixture g(Req(), /*max_model_len=*/4);
  EXPECT_EQ(g.Feed(9).text, "");  // held back
  d = g.Feed(10);
  EXPECT_EQ(d.finish, FinishReason::kLength);
  EXPECT_EQ(d.text, "\xC3\xA9");
}

TEST(OutputProcessor, LogprobsOnlyWhenAsked) {
  Fixture f(Req());
  EXPECT_EQ(f.Feed(1, -0.5f).tokens.at(0).logprob, 0.f);
  EngineRequest r = Req();
  r.sampling.logprobs = true;
  Fixture g(std::move(r));
  Delta d = g.Feed(1, -0.5f);
  EXPECT_EQ(d.tokens.at(0).id, 1);
  EXPECT_FLOAT_EQ(d.tokens.at(0).logprob, -0.5f);
}

TEST(OutputProcessor, EndingCarriesTheTotals) {
  Fixture f(Req());
  f.Feed(1);
  Delta d = f.out.Ending(f.req, FinishReason::kCancelled, "gone", f.now + std::chrono::milliseconds(90));
  EXPECT_EQ(d.finish, FinishReason::kCancelled);
  EXPECT_EQ(d.error, "gone");
  EXPECT_EQ(d.completion_tokens, 1);
  EXPECT_DOUBLE_EQ(d.total_ms, 100);
  // Never scheduled: the whole wait counts as queue time.
  Fixture g(Req());
  d = g.out.Ending(g.req, FinishReason::kCancelled, "", g.now + std::chrono::milliseconds(40));
  EXPECT_DOUBLE_EQ(d.queued_ms, 40);
  EXPECT_DOUBLE_EQ(d.ttft_ms, 0);
}

// A stream resumed after `prior` (another worker delivered those) against the same stream
// undisturbed: the text after the boundary, the stop and the totals are the same.
struct Resumed {
  Resumed(EngineRequest r, std::vector<int32_t> prior) : f([&] {
    r.resume_output = std::move(prior);
    return r;
  }()) {
    f.out.Resume(&f.req);
  }
  Fixture f;
};

TEST(OutputProcessor, AResumedStreamFindsAStopStringAcrossTheBoundary) {
  EngineRequest r = Req();
  r.stop = {"ld!"};
  Fixture whole(r);
  std::vector<std::string> texts;
  for (int32_t tok : {1, 2, 3}) texts.push_back(whole.Feed(tok).text);
  EXPECT_EQ(texts, (std::vector<std::string>{"Hello", " wor", ""}));  // "ld" held back
  const Delta end = whole.Feed(4);
  ASSERT_EQ(end.finish, FinishReason::kStop);

  // Another worker had delivered 1, 2, 3 (and the text "Hello wor"): this one goes on.
  Resumed re(r, {1, 2, 3});
  EXPECT_EQ(re.f.req.tokens, (std::vector<int32_t>{1, 2, 1, 2, 3}));
  EXPECT_EQ(re.f.req.num_prompt, 2);
  const Delta d = re.f.Feed(4);
  EXPECT_EQ(d.finish, FinishReason::kStop);
  EXPECT_EQ(d.matched_stop, "ld!");
  EXPECT_EQ(d.text, end.text);
  EXPECT_EQ(d.prompt_tokens, 2);
  EXPECT_EQ(d.completion_tokens, 4);  // usage as the client saw it
}

TEST(OutputProcessor, AResumedStreamCompletesACharacterSplitAtTheBoundary) {
  Fixture whole(Req());
  EXPECT_EQ(whole.Feed(9).text, "");
  EXPECT_EQ(whole.Feed(10).text, "\xC3\xA9");
  Resumed re(Req(), {9});
  EXPECT_EQ(re.f.Feed(10).text, "\xC3\xA9");
}

TEST(OutputProcessor, AResumedStreamCountsMaxTokensFromTheBoundary) {
  EngineRequest r = Req();
  r.max_tokens = 2;  // new tokens: the caller subtracted what was delivered
  Resumed re(r, {1, 2, 3});
  EXPECT_EQ(re.f.Feed(4).finish, FinishReason::kNone);
  const Delta d = re.f.Feed(4);
  EXPECT_EQ(d.finish, FinishReason::kLength);
  EXPECT_EQ(d.completion_tokens, 5);
}

TEST(OutputProcessor, AResumedStreamSkipsTheSamplerDrawsAndFeedsThePenalties) {
  EngineRequest r = Req();
  r.sampling.temperature = 0.8f;
  Resumed sampled(r, {1, 2, 3});
  std::mt19937_64 want(1);  // the fixture's seed
  want.discard(3);          // one uniform per sampled token
  EXPECT_EQ(sampled.f.req.sampler.rng(), want());
  EXPECT_EQ(sampled.f.req.sampler.output, (std::vector<int32_t>{1, 2, 3}));
  Resumed greedy(Req(), {1, 2, 3});  // greedy rows draw nothing
  EXPECT_EQ(greedy.f.req.sampler.rng(), std::mt19937_64(1)());
}

}  // namespace
}  // namespace r1::engine
