// The exchange without a network: a real worker pool with hand-added workers, scripted calls,
// a hand-driven strand on a fake clock and a recording sink. Checks the fan-out over prompts
// (one call each, carrying the prompt's choices) and the demultiplexing of their choices,
// the formatting of streamed and whole responses, retries (a failing and a silent worker),
// stream resume (a worker dying, failing or stalling mid-stream; the limit), cancellation and
// the errors a client sees.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "gateway/main/exchange.h"
#include "gateway/upstream/worker_pool.h"
#include "tests/gateway/fakes.h"

namespace r1::gw {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using r1serve::v1::FINISH_REASON_LENGTH;
using r1serve::v1::FINISH_REASON_STOP;

class ExchangeTest : public ::testing::Test {
 protected:
  // Two healthy workers; breakers open after `breaker_failures` consecutive faults.
  void Init(int breaker_failures = 1) {
    PoolOptions po;
    po.breaker.failure_threshold = breaker_failures;
    po.breaker.cooldown = 60s;
    pool_ = std::make_unique<WorkerPool>(po, &clock_, &random_);
    a_ = pool_->AddForTest("10.0.0.1:50051");
    b_ = pool_->AddForTest("10.0.0.2:50051");
    r1serve::v1::LoadReport report;
    report.set_model_id("m");  // the model the requests name
    report.set_resume(true);   // both continue resumed streams
    a_->SetLoad(report);
    b_->SetLoad(report);
    GatewayOptions o;
    o.first_token_timeout_s = 30;
    o.stall_timeout_s = 20;
    o.max_resumes = 2;
    o.request_timeout_s = 600;
    ctx_ = std::make_unique<GatewayContext>(o, pool_.get(), &metrics_, &clock_, &random_,
                                            calls_.Starter());
  }
  void Run(ApiKind kind, const std::string& body) {
    auto params = ParseGenRequest(kind, body);
    ASSERT_TRUE(params.ok()) << params.status();
    ++ctx_->active_requests;  // as Gateway::Generate does
    std::make_shared<Exchange>(ctx_.get(), sink_, strand_, std::move(*params),
                               kind == ApiKind::kChat ? "/v1/chat/completions"
                                                      : "/v1/completions")
        ->Start();
  }
  testing::FakeCall& call(size_t i) { return *calls_.calls.at(i); }
  // Sends messages and ends the call properly.
  void Finish(size_t i, const std::vector<std::string>& texts,
              r1serve::v1::FinishReason f = FINISH_REASON_STOP) {
    for (size_t k = 0; k < texts.size(); ++k)
      call(i).Send(testing::Piece(texts[k], k + 1 == texts.size() ? f
                                      : r1serve::v1::FINISH_REASON_UNSPECIFIED,
                                  static_cast<uint32_t>(texts.size())));
    call(i).Done(grpc::Status::OK);
    strand_->RunPending();
  }
  // The JSON events of the SSE stream so far ("[DONE]" left as a string).
  std::vector<json::value> Events() const {
    std::vector<json::value> out;
    for (const std::string& c : sink_->chunks) {
      EXPECT_EQ(c.substr(0, 6), "data: ");
      EXPECT_EQ(c.substr(c.size() - 2), "\n\n");
      std::string payload = c.substr(6, c.size() - 8);
      out.push_back(payload == "[DONE]" ? json::value("[DONE]") : json::parse(payload));
    }
    return out;
  }
  double Metric(const std::string& series) {
    const std::string text = metrics_.Serialize(*pool_);
    size_t p = text.find("\n" + series + " ");
    return p == std::string::npos ? 0 : std::stod(text.substr(p + series.size() + 2));
  }

  // The concatenated text of a chat stream's deltas, and its finish reasons.
  std::pair<std::string, std::vector<std::string>> ChatText() const {
    std::string text;
    std::vector<std::string> finishes;
    for (const json::value& e : Events()) {
      if (!e.is_object() || !e.as_object().contains("choices") || e.at("choices").as_array().empty())
        continue;
      const auto& ch = e.at("choices").at(0);
      const auto& d = ch.at("delta").as_object();
      for (const char* k : {"reasoning_content", "content"})
        if (d.contains(k) && d.at(k).is_string()) text += std::string(d.at(k).as_string());
      if (!ch.at("finish_reason").is_null())
        finishes.emplace_back(ch.at("finish_reason").as_string());
    }
    return {text, finishes};
  }
  int Roles() const {
    int n = 0;
    for (const json::value& e : Events())
      if (e.is_object() && e.as_object().contains("choices") &&
          !e.at("choices").as_array().empty() && e.at("choices").at(0).at("delta").as_object().contains("role"))
        ++n;
    return n;
  }

  FakeClock clock_;
  FakeRandom random_{0};  // ties go to the last worker; backoff delays are 0
  GatewayMetrics metrics_;
  std::unique_ptr<WorkerPool> pool_;
  std::shared_ptr<Worker> a_, b_;
  testing::FakeCalls calls_;
  std::unique_ptr<GatewayContext> ctx_;
  std::shared_ptr<testing::ManualStrand> strand_ =
      std::make_shared<testing::ManualStrand>(&clock_);
  std::shared_ptr<testing::FakeSink> sink_ = std::make_shared<testing::FakeSink>();
};

// A message of choice `k` of a call with several choices.
r1serve::v1::GenerateResponse Of(uint32_t k, r1serve::v1::GenerateResponse m) {
  m.set_choice_index(k);
  return m;
}

TEST_F(ExchangeTest, OneCallPerPromptCarriesItsChoicesAndStreamsEach) {
  Init();
  Run(ApiKind::kCompletion,
      R"({"model":"m","prompt":["x","y"],"n":2,"seed":7,"stream":true,"max_tokens":5})");
  ASSERT_EQ(calls_.calls.size(), 2u);
  const std::string id = call(0).request.request_id().substr(0, call(0).request.request_id().size() - 2);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(call(i).request.request_id(), id + "-" + std::to_string(i));
    EXPECT_EQ(call(i).request.text(), i == 0 ? "x" : "y");
    EXPECT_EQ(call(i).request.n(), 2u);
    EXPECT_EQ(call(i).request.sampling().seed(), 7u);  // the worker gives choice k seed + k
    EXPECT_EQ(call(i).request.max_tokens(), 5u);
  }
  // Least connections over sequences: one call of two choices on each worker.
  EXPECT_EQ(a_->active, 2);
  EXPECT_EQ(b_->active, 2);
  EXPECT_FALSE(sink_->streaming);  // the 200 header waits for a first token

  call(1).Send(Of(0, testing::Piece("c")));
  strand_->RunPending();
  EXPECT_TRUE(sink_->streaming);
  call(1).Send(Of(0, testing::Piece("d", FINISH_REASON_LENGTH, 2)));
  call(0).Send(Of(1, testing::Piece("b", FINISH_REASON_STOP, 1)));
  call(0).Send(Of(0, testing::Piece("a", FINISH_REASON_STOP, 1)));
  call(0).Done(grpc::Status::OK);
  call(1).Send(Of(1, testing::Piece("e", FINISH_REASON_STOP, 1)));
  call(1).Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_TRUE(sink_->ended);
  std::vector<json::value> ev = Events();
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev.back(), json::value("[DONE]"));
  // Each choice's text, in order, with its finish reason: prompt p's choice k is index 2p + k.
  std::map<int64_t, std::string> text, finish;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    const auto& ch = ev[i].at("choices").at(0);
    EXPECT_EQ(ev[i].at("object"), "text_completion");
    EXPECT_EQ(ev[i].at("created").as_int64(), 1'700'000'000);
    const int64_t index = ch.at("index").as_int64();
    text[index] += std::string(ch.at("text").as_string());
    if (!ch.at("finish_reason").is_null())
      finish[index] = std::string(ch.at("finish_reason").as_string());
  }
  EXPECT_EQ(text, (std::map<int64_t, std::string>{{0, "a"}, {1, "b"}, {2, "cd"}, {3, "e"}}));
  EXPECT_EQ(finish, (std::map<int64_t, std::string>{
                        {0, "stop"}, {1, "stop"}, {2, "length"}, {3, "stop"}}));
  EXPECT_EQ(ctx_->active_requests, 0);
  EXPECT_EQ(a_->active + b_->active, 0);
  EXPECT_EQ(Metric(R"(r1_gateway_requests_total{code="200",route="/v1/completions"})"), 1);
}

// The worker fails one choice (FINISH_REASON_ERROR) mid-stream: that choice resumes alone on
// the other worker, as a call of its own with the seed the worker gave it, while the call
// goes on for the others.
TEST_F(ExchangeTest, AChoiceTheWorkerFailsResumesAloneWhileTheOthersGoOn) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion,
      R"({"model":"m","prompt":"x","n":3,"seed":40,"stream":true,"max_tokens":4})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  const std::string id = call(0).request.request_id();
  for (uint32_t k = 0; k < 3; ++k)
    call(0).Send(Of(k, testing::Tokens("a" + std::to_string(k), {10})));
  auto failed = Of(1, testing::Tokens("b1", {11}, r1serve::v1::FINISH_REASON_ERROR));
  failed.set_error_message("engine step failed");
  call(0).Send(std::move(failed));
  strand_->RunPending();
  ASSERT_EQ(calls_.calls.size(), 2u);
  const auto& r = call(1).request;
  EXPECT_NE(call(1).worker, call(0).worker);
  EXPECT_EQ(r.n(), 0u);
  EXPECT_EQ(r.sampling().seed(), 41u);
  EXPECT_EQ(r.request_id(), id + "-1");
  EXPECT_EQ(std::vector<int32_t>(r.resume().output_token_ids().begin(),
                                 r.resume().output_token_ids().end()),
            (std::vector<int32_t>{10, 11}));
  EXPECT_EQ(r.max_tokens(), 2u);
  EXPECT_FALSE(call(0).cancelled);
  call(0).Send(Of(0, testing::Tokens("c0", {12}, FINISH_REASON_STOP, 2)));
  call(0).Send(Of(2, testing::Tokens("c2", {12}, FINISH_REASON_STOP, 2)));
  call(0).Done(grpc::Status::OK);  // its ERROR makes the outcome a failure: no one is left
  call(1).Send(testing::Tokens("c1", {13}));
  call(1).Send(testing::Tokens("d1", {14}, FINISH_REASON_LENGTH, 4));
  call(1).Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_TRUE(sink_->ended);
  std::map<int64_t, std::string> text, finish;
  for (const json::value& e : Events()) {
    ASSERT_FALSE(e.is_object() && e.as_object().contains("error")) << e;
    if (!e.is_object()) continue;
    const auto& ch = e.at("choices").at(0);
    text[ch.at("index").as_int64()] += std::string(ch.at("text").as_string());
    if (!ch.at("finish_reason").is_null())
      finish[ch.at("index").as_int64()] = std::string(ch.at("finish_reason").as_string());
  }
  EXPECT_EQ(text, (std::map<int64_t, std::string>{{0, "a0c0"}, {1, "a1b1c1d1"}, {2, "a2c2"}}));
  EXPECT_EQ(finish, (std::map<int64_t, std::string>{{0, "stop"}, {1, "length"}, {2, "stop"}}));
  EXPECT_EQ(Metric(R"(r1_gateway_stream_resumes_total{reason="internal"})"), 1);
  EXPECT_EQ(a_->active + b_->active, 0);
}

// A call that fails before any of its choices has output is tried again whole; one that fails
// after some did leaves each unfinished choice to go on alone: resumed when it has output,
// started again otherwise.
TEST_F(ExchangeTest, AFailedCallIsRetriedWholeBeforeOutputAndChoiceByChoiceAfter) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","n":3,"seed":5,"stream":true})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  call(0).Done(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"));
  strand_->Advance(0ms);
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_NE(call(1).worker, call(0).worker);
  EXPECT_EQ(call(1).request.n(), 3u);
  EXPECT_EQ(call(1).request.sampling().seed(), 5u);
  EXPECT_EQ(Metric(R"(r1_gateway_retries_total{reason="resource_exhausted"})"), 1);
  EXPECT_EQ(call(1).worker->active, 3);

  call(1).Send(Of(2, testing::Tokens("z", {7})));
  call(1).Send(Of(0, testing::Tokens("x", {5}, FINISH_REASON_STOP, 1)));
  call(1).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed"));
  strand_->Advance(0ms);
  // Choice 0 is complete; 2 resumes with its token; 1 (nothing yet) starts again alone.
  ASSERT_EQ(calls_.calls.size(), 4u);
  std::map<int64_t, const r1serve::v1::GenerateRequest*> alone;
  for (size_t i = 2; i < 4; ++i) alone[call(i).request.sampling().seed()] = &call(i).request;
  ASSERT_EQ(alone.size(), 2u);
  ASSERT_TRUE(alone.count(6) && alone.count(7));
  EXPECT_EQ(alone[6]->resume().output_token_ids_size(), 0);
  EXPECT_EQ(alone[7]->resume().output_token_ids_size(), 1);
  EXPECT_EQ(alone[6]->n(), 0u);
  for (size_t i = 2; i < 4; ++i) {
    const bool resumed = call(i).request.resume().output_token_ids_size() > 0;
    call(i).Send(testing::Tokens(resumed ? "Z" : "y", {8}, FINISH_REASON_STOP, resumed ? 2 : 1));
    call(i).Done(grpc::Status::OK);
  }
  strand_->RunPending();
  ASSERT_TRUE(sink_->ended);
  std::map<int64_t, std::string> text;
  for (const json::value& e : Events()) {
    ASSERT_FALSE(e.is_object() && e.as_object().contains("error")) << e;
    if (e.is_object()) text[e.at("choices").at(0).at("index").as_int64()] +=
        std::string(e.at("choices").at(0).at("text").as_string());
  }
  EXPECT_EQ(text, (std::map<int64_t, std::string>{{0, "x"}, {1, "y"}, {2, "zZ"}}));
  EXPECT_EQ(a_->active + b_->active, 0);
}

// A worker that tags a message with a choice the request does not have breaks the protocol:
// the call ends there, the client gets a clean error naming it, and the gateway serves on.
TEST_F(ExchangeTest, AChoiceIndexOutOfRangeIsACleanError) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","n":2})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  call(0).Send(Of(2, testing::Piece("?")));
  strand_->RunPending();
  EXPECT_TRUE(call(0).cancelled);
  call(0).Done(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  strand_->RunPending();
  ASSERT_TRUE(sink_->ended);
  EXPECT_EQ(sink_->status, 500u);
  const std::string message(json::parse(sink_->body).at("error").at("message").as_string());
  EXPECT_NE(message.find("sent choice_index 2 for a request of 2 choice(s)"), std::string::npos)
      << message;
  EXPECT_EQ(message.find("10.0.0."), std::string::npos) << "no internal address: " << message;
  EXPECT_EQ(a_->active + b_->active, 0);
  EXPECT_EQ(ctx_->active_requests, 0);
}

TEST_F(ExchangeTest, WholeChatResponseWithReasoningSplit) {
  Init();
  Run(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  EXPECT_EQ(call(0).request.chat().messages(0).content(), "hi");
  Finish(0, {"Let me think.</th", "ink>The answer", " is 4."});
  ASSERT_TRUE(sink_->ended);
  EXPECT_EQ(sink_->status, 200u);
  EXPECT_EQ(sink_->content_type, "application/json");
  json::value v = json::parse(sink_->body);
  EXPECT_EQ(v.at("object"), "chat.completion");
  const auto& msg = v.at("choices").at(0).at("message");
  EXPECT_EQ(msg.at("reasoning_content"), "Let me think.");
  EXPECT_EQ(msg.at("content"), "The answer is 4.");
  EXPECT_EQ(v.at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_EQ(v.at("usage").at("prompt_tokens").as_int64(), 5);
  EXPECT_EQ(v.at("usage").at("completion_tokens").as_int64(), 3);
}

TEST_F(ExchangeTest, FailureBeforeTheFirstTokenIsRetriedOnAnotherWorker) {
  Init();
  Run(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  EXPECT_EQ(call(0).worker, b_.get());
  call(0).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"));
  strand_->RunPending();
  EXPECT_EQ(calls_.calls.size(), 1u);  // waiting for the backoff
  EXPECT_TRUE(sink_->chunks.empty());
  strand_->Advance(0ms);
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).worker, a_.get());
  Finish(1, {"ok"});
  std::vector<json::value> ev = Events();
  ASSERT_EQ(ev.size(), 3u);  // role and text, finish, [DONE]
  EXPECT_EQ(ev[0].at("choices").at(0).at("delta").at("reasoning_content"), "ok");
  EXPECT_EQ(ev[1].at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_EQ(Metric(R"(r1_gateway_retries_total{reason="unavailable"})"), 1);
  EXPECT_EQ(Metric(R"(r1_gateway_upstream_attempts_total{worker="10.0.0.1:50051"})"), 1);
  EXPECT_EQ(Metric(R"(r1_gateway_upstream_attempts_total{worker="10.0.0.2:50051"})"), 1);
  EXPECT_EQ(ctx_->retry.budget().active_retries(), 0);
}

TEST_F(ExchangeTest, ASilentWorkerIsAbandonedAtTheFirstTokenTimeout) {
  Init();
  Run(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  strand_->Advance(30s - 1ms);
  EXPECT_EQ(calls_.calls.size(), 1u);
  strand_->Advance(1ms);  // the timeout, then the (zero) backoff
  EXPECT_TRUE(call(0).cancelled);
  EXPECT_EQ(b_->breaker().State(), BreakerState::kOpen);  // counted against the silent one
  EXPECT_EQ(b_->active, 0);
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).worker, a_.get());
  EXPECT_EQ(call(1).deadline, clock_.WallNow() + 600s);  // its own deadline
  Finish(1, {"ok"});
  EXPECT_TRUE(sink_->ended);
  EXPECT_EQ(Events().back(), json::value("[DONE]"));
  EXPECT_EQ(Metric(R"(r1_gateway_retries_total{reason="deadline_exceeded"})"), 1);
  // The first call's own end, much later, changes nothing.
  call(0).Done(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  strand_->RunPending();
  EXPECT_EQ(a_->active + b_->active, 0);
}

TEST_F(ExchangeTest, OutOfAttemptsGivesTheLastFailure) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x"})");
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(calls_.calls.size(), i + 1);
    call(i).Done(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"));
    strand_->Advance(0ms);
  }
  EXPECT_EQ(calls_.calls.size(), 3u);  // --max-attempts 3
  EXPECT_EQ(sink_->status, 429u);
  EXPECT_EQ(json::parse(sink_->body).at("error").at("code"), "resource_exhausted");
  EXPECT_EQ(json::parse(sink_->body).at("error").at("message"), "queue full");
  EXPECT_EQ(sink_->headers, (http::Headers{{"Retry-After", "1"}}));
  EXPECT_EQ(ctx_->active_requests, 0);
  EXPECT_EQ(ctx_->retry.budget().active_retries(), 0);
}

TEST_F(ExchangeTest, NotRetryableFailuresAnswerAtOnce) {
  Init();
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x"})");
  call(0).Done(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "prompt too long"));
  strand_->RunPending();
  EXPECT_EQ(calls_.calls.size(), 1u);
  EXPECT_EQ(sink_->status, 400u);
  EXPECT_EQ(json::parse(sink_->body).at("error").at("type"), "invalid_request_error");
  EXPECT_EQ(b_->breaker().State(), BreakerState::kClosed);  // a proper answer
}

TEST_F(ExchangeTest, FailureAfterTheFirstTokenEndsTheStream) {
  Init();
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","stream":true})");
  call(0).Send(testing::Piece("a"));
  call(0).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker died"));
  strand_->Advance(1s);
  EXPECT_EQ(calls_.calls.size(), 1u);  // no retry once the client has tokens
  std::vector<json::value> ev = Events();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].at("choices").at(0).at("text"), "a");
  EXPECT_EQ(ev[1].at("choices").at(0).at("finish_reason"), "error");
  EXPECT_EQ(ev[2].at("error").at("message"), "the worker failed mid-stream: worker died");
  EXPECT_EQ(ev[3], json::value("[DONE]"));
  EXPECT_TRUE(sink_->ended);
}

TEST_F(ExchangeTest, AStreamResumesOnAnotherWorkerWhenItsWorkerDies) {
  Init();
  Run(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
                          "max_tokens":10,"temperature":0.7,"seed":41,
                          "stream_options":{"include_usage":true}})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  EXPECT_EQ(call(0).worker, b_.get());
  EXPECT_FALSE(call(0).request.has_resume());
  call(0).Send(testing::Tokens("Let me", {11, 12}));
  call(0).Send(testing::Tokens(" th", {13}));
  call(0).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed"));
  strand_->RunPending();
  // At once (no back-off), on the other worker, with what the client already has.
  ASSERT_EQ(calls_.calls.size(), 2u);
  const auto& r = call(1).request;
  EXPECT_EQ(call(1).worker, a_.get());
  EXPECT_EQ(std::vector<int32_t>(r.resume().output_token_ids().begin(),
                                 r.resume().output_token_ids().end()),
            (std::vector<int32_t>{11, 12, 13}));
  EXPECT_EQ(r.max_tokens(), 7u);  // 10 less the 3 delivered
  EXPECT_EQ(r.sampling().seed(), 41u);
  EXPECT_FLOAT_EQ(r.sampling().temperature(), 0.7f);
  EXPECT_EQ(r.chat().messages(0).content(), "hi");
  call(1).Send(testing::Tokens("ink.</think>Four", {14, 15, 16}));
  auto last = testing::Tokens(".", {17}, FINISH_REASON_STOP, 7);
  last.mutable_usage()->set_completion_tokens(7);  // the worker counts the resumed tokens too
  call(1).Send(std::move(last));
  call(1).Done(grpc::Status::OK);
  strand_->RunPending();
  // The client saw one stream: no error, nothing repeated or missing, one role, one finish.
  const auto [text, finishes] = ChatText();
  EXPECT_EQ(text, "Let me think.Four.");
  EXPECT_EQ(finishes, std::vector<std::string>{"stop"});
  EXPECT_EQ(Roles(), 1);
  for (const std::string& c : sink_->chunks) EXPECT_EQ(c.find("error"), std::string::npos) << c;
  const std::vector<json::value> ev = Events();
  EXPECT_EQ(ev.back(), json::value("[DONE]"));
  EXPECT_EQ(ev[ev.size() - 2].at("usage").at("completion_tokens").as_int64(), 7);
  EXPECT_EQ(Metric(R"(r1_gateway_stream_resumes_total{reason="unavailable"})"), 1);
  EXPECT_EQ(Metric(R"(r1_gateway_retries_total{reason="unavailable"})"), 0);  // not a retry
  EXPECT_EQ(a_->active + b_->active, 0);
}

TEST_F(ExchangeTest, WithoutASeedTheGatewayPicksOneAndTheResumeKeepsIt) {
  Init();
  random_ = FakeRandom{0, 0, 0, 12345};  // the id takes two draws; then the seed
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","stream":true})");
  ASSERT_TRUE(call(0).request.sampling().has_seed());
  const uint64_t seed = call(0).request.sampling().seed();
  call(0).Send(testing::Tokens("a", {1}));
  call(0).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"));
  strand_->RunPending();
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).request.sampling().seed(), seed);
  EXPECT_EQ(call(1).request.max_tokens(), 0u);  // no limit stays no limit
  Finish(1, {"b"});
  std::string text;
  for (const json::value& e : Events())
    if (e.is_object()) text += std::string(e.at("choices").at(0).at("text").as_string());
  EXPECT_EQ(text, "ab");
}

TEST_F(ExchangeTest, AStalledStreamResumesElsewhere) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","stream":true,"max_tokens":5})");
  call(0).Send(testing::Tokens("a", {1}));
  strand_->Advance(19s);
  EXPECT_EQ(calls_.calls.size(), 1u);
  strand_->Advance(1s);  // --stall-timeout 20 s
  EXPECT_TRUE(call(0).cancelled);
  EXPECT_FALSE(b_->healthy);  // suspect until a health poll passes
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).worker, a_.get());
  EXPECT_EQ(call(1).request.max_tokens(), 4u);
  call(1).Send(testing::Tokens("b", {2}, FINISH_REASON_LENGTH, 5));
  call(1).Done(grpc::Status::OK);
  strand_->RunPending();
  EXPECT_TRUE(sink_->ended);
  EXPECT_EQ(Metric(R"(r1_gateway_stream_resumes_total{reason="stalled"})"), 1);
}

TEST_F(ExchangeTest, AWholeResponseResumesToo) {
  Init();
  Run(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4})");
  call(0).Send(testing::Tokens("Hm, ", {1, 2}));
  call(0).Send([] {
    auto m = testing::Tokens("", {}, r1serve::v1::FINISH_REASON_ERROR);
    m.set_error_message("step failed");
    return m;
  }());
  call(0).Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).request.resume().output_token_ids_size(), 2);
  call(1).Send(testing::Tokens("</think>ok", {3, 4}, FINISH_REASON_LENGTH, 4));
  call(1).Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(sink_->status, 200u);
  json::value v = json::parse(sink_->body);
  EXPECT_EQ(v.at("choices").at(0).at("message").at("reasoning_content"), "Hm, ");
  EXPECT_EQ(v.at("choices").at(0).at("message").at("content"), "ok");
  EXPECT_EQ(v.at("choices").at(0).at("finish_reason"), "length");
  EXPECT_EQ(Metric(R"(r1_gateway_stream_resumes_total{reason="internal"})"), 1);
}

TEST_F(ExchangeTest, ResumesStopAtTheLimit) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","stream":true})");
  for (int i = 0; i < 3; ++i) {  // --max-resumes 2: three attempts in all
    ASSERT_EQ(calls_.calls.size(), static_cast<size_t>(i + 1));
    call(i).Send(testing::Tokens("t", {i}));
    call(i).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "died again"));
    a_->healthy = b_->healthy = true;  // as their next health polls say (they restarted)
    strand_->RunPending();
  }
  EXPECT_EQ(calls_.calls.size(), 3u);
  EXPECT_EQ(call(2).request.resume().output_token_ids_size(), 2);
  std::vector<json::value> ev = Events();
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[ev.size() - 3].at("choices").at(0).at("finish_reason"), "error");
  EXPECT_EQ(ev[ev.size() - 2].at("error").at("message"), "the worker failed mid-stream: died again");
  EXPECT_EQ(Metric(R"(r1_gateway_stream_resumes_total{reason="unavailable"})"), 2);
  EXPECT_EQ(Metric(R"(r1_gateway_stream_resumes_total{reason="limit_reached"})"), 1);
}

TEST_F(ExchangeTest, OnlyWorkersThatSayTheyResumeGetAResume) {
  Init();
  r1serve::v1::LoadReport old;  // an older worker: it would ignore `resume`
  old.set_model_id("m");
  a_->SetLoad(old);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","stream":true})");
  ASSERT_EQ(call(0).worker, b_.get());
  call(0).Send(testing::Tokens("a", {1}));
  call(0).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"));
  strand_->RunPending();
  EXPECT_EQ(calls_.calls.size(), 1u);  // none to resume on: the stream ends with an error
  std::vector<json::value> ev = Events();
  EXPECT_EQ(ev[ev.size() - 3].at("choices").at(0).at("finish_reason"), "error");
  // New requests still go to the older worker.
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"y"})");
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).worker, a_.get());
}

TEST_F(ExchangeTest, TheCallsOwnDeadlineIsNotResumed) {
  Init();
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","stream":true})");
  call(0).Send(testing::Tokens("a", {1}));
  call(0).Done(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"));
  strand_->RunPending();
  EXPECT_EQ(calls_.calls.size(), 1u);  // --request-timeout: another try would take as long
  EXPECT_TRUE(sink_->ended);
  EXPECT_EQ(Events().back(), json::value("[DONE]"));
}

TEST_F(ExchangeTest, ClientLeavingCancelsEveryCall) {
  Init();
  Run(ApiKind::kCompletion,
      R"({"model":"m","prompt":["x","y"],"n":2,"stream":true})");
  ASSERT_EQ(calls_.calls.size(), 2u);
  call(0).Send(Of(1, testing::Piece("a")));
  strand_->RunPending();
  const size_t chunks = sink_->chunks.size();
  sink_->Leave();
  EXPECT_TRUE(call(0).cancelled);
  EXPECT_TRUE(call(1).cancelled);
  EXPECT_EQ(a_->active + b_->active, 0);  // leases back at once
  EXPECT_EQ(ctx_->active_requests, 0);
  call(1).Send(Of(0, testing::Piece("late")));
  call(0).Done(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  call(1).Done(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  strand_->RunPending();
  EXPECT_EQ(sink_->chunks.size(), chunks);  // nothing more is written
  EXPECT_EQ(Metric(R"(r1_gateway_requests_total{code="499",route="/v1/completions"})"), 1);
  // Neither worker is blamed for the client leaving.
  EXPECT_EQ(a_->breaker().State(), BreakerState::kClosed);
  EXPECT_EQ(b_->breaker().State(), BreakerState::kClosed);
}

// gRPC's words for a dropped connection do not say whose it was: the 503 does.
TEST_F(ExchangeTest, ALostConnectionIsNamedTheWorkers) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x"})");
  // Each failure marks its worker down; with both down the last failure is the answer.
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(calls_.calls.size(), i + 1);
    call(i).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Transport closed"));
    strand_->Advance(0ms);
  }
  EXPECT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(sink_->status, 503u);
  EXPECT_EQ(json::parse(sink_->body).at("error").at("message"),
            "the worker is unavailable: Transport closed");
  EXPECT_EQ(json::parse(sink_->body).at("error").at("code"), "unavailable");
}

TEST_F(ExchangeTest, NoHealthyWorkerIs503) {
  Init();
  a_->healthy = false;
  b_->healthy = false;
  Run(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_TRUE(calls_.calls.empty());
  EXPECT_EQ(sink_->status, 503u);
  EXPECT_EQ(json::parse(sink_->body).at("error").at("code"), "no_worker_available");
  EXPECT_EQ(sink_->headers, (http::Headers{{"Retry-After", "1"}}));
  EXPECT_EQ(ctx_->active_requests, 0);
}

// Output flow control: the client's queue reaching its cap pauses every running call, a retry
// started meanwhile starts paused, the queue draining resumes them all; each message the
// exchange took lets its call read the next one.
TEST_F(ExchangeTest, AFullClientQueuePausesEveryCallUntilItDrains) {
  Init(/*breaker_failures=*/100);
  Run(ApiKind::kCompletion, R"({"model":"m","prompt":"x","n":2,"stream":true})");
  ASSERT_EQ(calls_.calls.size(), 1u);
  ASSERT_TRUE(sink_->flow);
  call(0).Send(Of(0, testing::Tokens("a", {1})));
  call(0).Send(Of(0, testing::Tokens("b", {2})));
  strand_->RunPending();
  EXPECT_EQ(call(0).taken, 2);

  sink_->flow(true);
  EXPECT_TRUE(call(0).paused);
  // The call fails: choice 0 resumes and choice 1 starts alone; the new calls start paused.
  call(0).Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  strand_->RunPending();
  strand_->Advance(0ms);
  ASSERT_EQ(calls_.calls.size(), 3u);
  EXPECT_TRUE(call(1).paused);
  EXPECT_TRUE(call(2).paused);

  sink_->flow(false);
  EXPECT_FALSE(call(1).paused);
  EXPECT_FALSE(call(2).paused);
  Finish(1, {"c"});
  Finish(2, {"d"});
  EXPECT_TRUE(sink_->ended);
  EXPECT_FALSE(sink_->flow) << "the exchange lets go of the flow handler when it ends";
}

}  // namespace
}  // namespace r1::gw
