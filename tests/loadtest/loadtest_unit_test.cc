// Units of r1-loadtest: length distributions, quantiles, the SSE parser, targets, and how
// one SSE event changes a request's result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <boost/json.hpp>

#include "loadtest/distribution.h"
#include "loadtest/http_backend.h"
#include "loadtest/grpc_backend.h"
#include "loadtest/prompt.h"
#include "loadtest/report.h"
#include "loadtest/sse.h"
#include "loadtest/stats.h"

namespace r1::loadtest {
namespace {

TEST(LengthDist, ParsesTheThreeForms) {
  auto fixed = LengthDist::Parse("128");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->ToString(), "fixed:128");
  auto uni = LengthDist::Parse("uniform:8:32");
  ASSERT_TRUE(uni.ok());
  EXPECT_EQ(uni->Min(), 8);
  EXPECT_EQ(uni->Max(), 32);
  auto list = LengthDist::Parse("list:4,16,64");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->ToString(), "list:4,16,64");
  auto bare = LengthDist::Parse("4,16");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->ToString(), "list:4,16");
}

TEST(LengthDist, RejectsBadText) {
  for (const char* bad : {"", "abc", "uniform:9", "uniform:9:3", "uniform:a:b", "-4", "list:",
                          "1,,2", "fixed:"}) {
    EXPECT_FALSE(LengthDist::Parse(bad).ok()) << bad;
  }
}

TEST(LengthDist, SamplesStayInRangeAndCoverIt) {
  SystemRandom rng(7);
  auto uni = *LengthDist::Parse("uniform:3:6");
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    int64_t v = uni.Sample(rng);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 6);
    seen.insert(v);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{3, 4, 5, 6}));
  auto list = *LengthDist::Parse("list:10,20");
  std::set<int64_t> seen_list;
  for (int i = 0; i < 200; ++i) seen_list.insert(list.Sample(rng));
  EXPECT_EQ(seen_list, (std::set<int64_t>{10, 20}));
}

// The lognormal kind: its sample median and the share above the median's e^SIGMA multiple are
// those of the distribution (the normal's median 0 and its 84th percentile, 1 sigma), within
// sampling error over 20,000 draws; every sample is clamped into [MIN, MAX].
TEST(LengthDist, LogNormalHasItsMedianAndTail) {
  auto d = LengthDist::Parse("lognormal:2000:1:64:16384");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ToString(), "lognormal:2000:1:64:16384");
  EXPECT_EQ(d->Min(), 64);
  EXPECT_EQ(d->Max(), 16384);
  SystemRandom rng(11);
  std::vector<int64_t> v;
  for (int i = 0; i < 20000; ++i) v.push_back(d->Sample(rng));
  for (int64_t x : v) {
    ASSERT_GE(x, 64);
    ASSERT_LE(x, 16384);
  }
  std::sort(v.begin(), v.end());
  EXPECT_NEAR(static_cast<double>(v[v.size() / 2]), 2000, 80);
  // P(X > 2000 e) = P(Z > 1) = 0.1587.
  double above = static_cast<double>(std::count_if(v.begin(), v.end(), [](int64_t x) { return x > 2000 * M_E; })) / v.size();
  EXPECT_NEAR(above, 0.1587, 0.012);
  for (const char* bad : {"lognormal:2000:1:64", "lognormal:0:1:1:2", "lognormal:5:-1:1:2", "lognormal:5:1:9:2", "lognormal:a:1:1:2"})
    EXPECT_FALSE(LengthDist::Parse(bad).ok()) << bad;
}

TEST(Stats, QuantilesMatchNumpyLinear) {
  // numpy.percentile([1..10], [50, 90, 99]) = 5.5, 9.1, 9.91
  std::vector<double> v = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  Summary s = Summarize(v);
  EXPECT_DOUBLE_EQ(s.p50, 5.5);
  EXPECT_NEAR(s.p90, 9.1, 1e-12);
  EXPECT_NEAR(s.p99, 9.91, 1e-12);
  EXPECT_DOUBLE_EQ(s.mean, 5.5);
  EXPECT_EQ(s.count, 10u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 10);
  std::vector<double> one = {3};
  EXPECT_DOUBLE_EQ(Quantile(one, 0.99), 3);
  std::vector<double> none;
  EXPECT_DOUBLE_EQ(Quantile(none, 0.5), 0);
}

TEST(Sse, SplitsEventsAcrossArbitraryReads) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) { events.push_back(d); });
  std::string stream = ": comment\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\nevent: e\ndata: [DONE]\n\n";
  for (char c : stream) p.Feed(std::string_view(&c, 1));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], "{\"a\":1}");
  EXPECT_EQ(events[1], "x\ny");
  EXPECT_EQ(events[2], "[DONE]");
}

TEST(Sse, FinishDispatchesATrailingEvent) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) { events.push_back(d); });
  p.Feed("data: last");
  EXPECT_TRUE(events.empty());
  p.Finish();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "last");
}

TEST(Target, ParsesHttpAndGrpc) {
  auto h = ParseTarget("http://127.0.0.1:8080");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->scheme, "http");
  EXPECT_EQ(h->host, "127.0.0.1");
  EXPECT_EQ(h->port, "8080");
  auto p = ParseTarget("http://gw.local:80/prefix/");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->base_path, "/prefix");
  auto g = ParseTarget("grpc://[::1]:50051");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->host, "::1");
  for (const char* bad : {"127.0.0.1:80", "http://host", "http://host:0", "grpc://h:99999",
                          "ftp://h:1", "grpc://h:1/x", "http://:80"}) {
    EXPECT_FALSE(ParseTarget(bad).ok()) << bad;
  }
}

TEST(SseEvent, CountsContentChunksAndTakesUsage) {
  RequestResult r;
  bool done = false;
  auto t0 = SteadyClock::now();
  ApplySseEvent(R"({"choices":[{"delta":{"role":"assistant"}}]})", t0, r, &done);
  EXPECT_FALSE(r.got_token);  // a role-only chunk is no token
  ApplySseEvent(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})",
                t0 + std::chrono::milliseconds(10), r, &done);
  EXPECT_TRUE(r.got_token);
  ApplySseEvent(R"({"choices":[{"delta":{"content":"a"}}]})", t0 + std::chrono::milliseconds(30), r,
                &done);
  ApplySseEvent(R"({"choices":[{"text":"b"}]})", t0 + std::chrono::milliseconds(60), r, &done);
  ApplySseEvent(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}})",
                t0 + std::chrono::milliseconds(61), r, &done);
  EXPECT_EQ(r.counted_tokens, 3);
  EXPECT_EQ(r.output_tokens, 9);
  EXPECT_EQ(r.prompt_tokens, 5);
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_NEAR(r.itl_s[0], 0.020, 1e-9);
  EXPECT_NEAR(r.itl_s[1], 0.030, 1e-9);
  EXPECT_FALSE(done);
  ApplySseEvent("[DONE]", t0, r, &done);
  EXPECT_TRUE(done);
  EXPECT_TRUE(r.error_kind.empty());
}

TEST(SseEvent, ClassifiesErrorsAndBadJson) {
  RequestResult r;
  bool done = false;
  ApplySseEvent(R"({"error":{"message":"boom","type":"server_error"}})", SteadyClock::now(), r,
                &done);
  EXPECT_EQ(r.error_kind, "stream_error");
  EXPECT_EQ(r.error_detail, "boom");
  RequestResult b;
  ApplySseEvent("{oops", SteadyClock::now(), b, &done);
  EXPECT_EQ(b.error_kind, "bad_response");
}

TEST(RequestResult, SplitsAMultiTokenMessagesGap) {
  RequestResult r;
  auto t0 = SteadyClock::now();
  r.OnTokens(t0, 2);
  r.OnTokens(t0 + std::chrono::milliseconds(40), 4);
  EXPECT_EQ(r.counted_tokens, 6);
  ASSERT_EQ(r.itl_s.size(), 4u);
  for (double g : r.itl_s) EXPECT_NEAR(g, 0.010, 1e-9);
}

TEST(RequestBody, ChatAndCompletionsShapes) {
  Options o;
  o.model = "m";
  RequestSpec s;
  s.prompt = " the of";
  s.max_tokens = 12;
  auto chat = boost::json::parse(BuildRequestBody(o, s)).as_object();
  EXPECT_EQ(chat.at("model").as_string(), "m");
  EXPECT_EQ(chat.at("messages").as_array()[0].at("content").as_string(), " the of");
  EXPECT_EQ(chat.at("max_tokens").as_int64(), 12);
  EXPECT_TRUE(chat.at("stream").as_bool());
  EXPECT_TRUE(chat.at("ignore_eos").as_bool());
  o.endpoint = "completions";
  o.ignore_eos = false;
  auto comp = boost::json::parse(BuildRequestBody(o, s)).as_object();
  EXPECT_EQ(comp.at("prompt").as_string(), " the of");
  EXPECT_FALSE(comp.contains("ignore_eos"));
}

TEST(Prompt, HasTheAskedNumberOfWords) {
  SystemRandom rng(3);
  std::string p = MakePrompt(25, rng);
  EXPECT_EQ(std::count(p.begin(), p.end(), ' '), 25);
  EXPECT_EQ(MakePrompt(0, rng), "");
}

TEST(Report, FiguresFromKnownTimes) {
  using std::chrono::milliseconds;
  auto t0 = SteadyClock::now();
  LevelResult level;
  level.level = Level{2, 0};
  level.wall_s = 2.0;
  // Two good requests: first tokens after 100 and 300 ms, then 4 more tokens 10 (20) ms
  // apart, ending 10 ms after the last token.
  for (int i = 0; i < 2; ++i) {
    RequestResult r;
    r.ok = true;
    r.start = t0;
    int ttft = i == 0 ? 100 : 300, gap = i == 0 ? 10 : 20;
    for (int k = 0; k < 5; ++k) r.OnTokens(t0 + milliseconds(ttft + k * gap), 1);
    r.output_tokens = 5;
    r.prompt_tokens = 9;
    r.end = t0 + milliseconds(ttft + 4 * gap + 10);
    level.results.push_back(r);
  }
  RequestResult bad;
  bad.Fail("http_503", "no worker");
  level.results.push_back(bad);
  level.results.push_back(bad);

  LevelReport rep = MakeReport(level);
  EXPECT_EQ(rep.sent, 4);
  EXPECT_EQ(rep.succeeded, 2);
  EXPECT_EQ(rep.failed, 2);
  EXPECT_EQ(rep.errors.at("http_503"), 2);
  EXPECT_EQ(rep.output_tokens, 10);
  EXPECT_EQ(rep.prompt_tokens, 18);
  EXPECT_DOUBLE_EQ(rep.requests_per_s, 1.0);
  EXPECT_DOUBLE_EQ(rep.output_tokens_per_s, 5.0);
  EXPECT_NEAR(rep.ttft_ms.p50, 200, 1e-6);  // halfway between 100 and 300
  EXPECT_NEAR(rep.ttft_ms.max, 300, 1e-6);
  EXPECT_EQ(rep.itl_ms.count, 8u);
  EXPECT_NEAR(rep.itl_ms.p50, 15, 1e-6);   // four 10s and four 20s
  EXPECT_NEAR(rep.tpot_ms.min, 10, 1e-6);
  EXPECT_NEAR(rep.tpot_ms.max, 20, 1e-6);
  EXPECT_NEAR(rep.e2e_ms.min, 150, 1e-6);
  EXPECT_NEAR(rep.e2e_ms.max, 390, 1e-6);
  std::string text = FormatText(Options{}, {rep});
  EXPECT_NE(text.find("TPOT"), std::string::npos);
  EXPECT_NE(text.find("http_503"), std::string::npos);
  auto v = ToJson(Options{}, {rep});
  EXPECT_NEAR(v.at("runs").at(0).at("tpot_ms").at("p50").as_double(), 15, 1e-6);
  // The sending window: tokens arriving from t0 to t0 + 350 ms count. Request 1 (100..140 ms)
  // has all 5 in it, request 2 (300, 320, 340, 360, 380 ms) three: 8 tokens in 0.35 s.
  level.window_start = t0;
  level.window_end = t0 + milliseconds(350);
  EXPECT_NEAR(MakeReport(level).window_output_tokens_per_s, 8 / 0.35, 1e-6);
  // Their contexts: 9 prompt tokens plus 0..4 before each of request 1's tokens, 0..2 of
  // request 2's: (5 * 9 + 10 + 3 * 9 + 3) / 8.
  EXPECT_NEAR(MakeReport(level).window_mean_context_tokens, (45 + 10 + 27 + 3) / 8.0, 1e-9);
  EXPECT_NEAR(ToJson(Options{}, {MakeReport(level)}).at("runs").at(0).at("window_mean_context_tokens").as_double(),
              (45 + 10 + 27 + 3) / 8.0, 1e-9);
  // A request cut before its usage count (prompt tokens unknown) counts its prompt at the
  // level's tokens per word: 18 tokens over 6 words, so its 4 words are 12 tokens.
  level.results[0].prompt_words = 3;
  level.results[1].prompt_words = 3;
  RequestResult cut;
  cut.prompt_words = 4;
  cut.start = t0;
  cut.OnTokens(t0 + milliseconds(50), 1);
  cut.OnTokens(t0 + milliseconds(60), 1);
  cut.Fail("timeout", "request timeout");
  level.results.push_back(cut);
  EXPECT_NEAR(MakeReport(level).window_mean_context_tokens, (45 + 10 + 27 + 3 + 12 + 13) / 10.0, 1e-9);
  // No prompt counts at all: no mean.
  for (RequestResult& q : level.results) q.prompt_tokens = -1;
  EXPECT_EQ(MakeReport(level).window_mean_context_tokens, 0.0);
}

TEST(GrpcErrorKind, NamesCodes) {
  EXPECT_EQ(GrpcErrorKind(14), "grpc_unavailable");
  EXPECT_EQ(GrpcErrorKind(8), "grpc_resource_exhausted");
  EXPECT_EQ(GrpcErrorKind(4), "grpc_deadline_exceeded");
  EXPECT_EQ(GrpcErrorKind(99), "grpc_code_99");
}

}  // namespace
}  // namespace r1::loadtest
