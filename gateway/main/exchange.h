// One generation request from parse to last byte (Envoy's router filter): the fan-out over its
// choices (n per prompt; one Generate call each) and the formatting of what comes back, as
// SSE chunks or one JSON body. Each choice runs as a series of Attempts (upstream/attempt.h),
// retried as the RetryPolicy says while nothing of the choice has reached the client.
//
// Lives on one strand (the HTTP session's); attempts post their events there.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/main/gateway.h"
#include "gateway/openai/reasoning.h"
#include "gateway/openai/request.h"
#include "gateway/openai/response.h"
#include "gateway/openai/tool_parser.h"
#include "gateway/upstream/attempt.h"
#include "gateway/upstream/retry_policy.h"
#include "gateway/upstream/strand.h"

namespace r1::gw {

class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(GatewayContext* ctx, std::shared_ptr<ResponseSink> sink,
           std::shared_ptr<Strand> strand, GenParams params, std::string route);
  ~Exchange();
  // On the strand. The request must already count in ctx->active_requests; the exchange
  // takes it off when it ends.
  void Start();

 private:
  struct Choice {
    Choice(int index, RetryState retry, std::unique_ptr<Timer> backoff, bool split,
           ToolCallParser tools)
        : index(index), retry(std::move(retry)), backoff(std::move(backoff)), splitter(split),
          tools(std::move(tools)) {}
    void ResetOutput();

    const int index;
    r1serve::v1::GenerateRequest proto;
    RetryState retry;
    std::unique_ptr<Timer> backoff;  // the wait before the next attempt
    std::shared_ptr<Attempt> attempt;  // the current one, while it runs
    std::vector<const Worker*> tried;
    std::optional<grpc::Status> last_failure;
    bool sent = false;  // some of this choice reached the client
    bool finished = false;
    // The current attempt's output.
    bool answered = false;
    ReasoningSplitter splitter;
    ToolCallParser tools;  // streamed: the calls in the content after the reasoning
    std::string text;
    std::vector<LogprobEntry> logprobs;
    size_t text_offset = 0;
    r1serve::v1::FinishReason finish = r1serve::v1::FINISH_REASON_UNSPECIFIED;
    UsageCounts usage;
  };

  void StartAttempt(Choice& c);
  void OnMessage(Choice& c, r1serve::v1::GenerateResponse&& m);
  void OnAttemptEnd(Choice& c, const grpc::Status& outcome);
  void OnClientGone();
  void MaybeFinishEarly(Choice& c);
  void ChoiceFinished(Choice& c);
  void ChoiceFailed(Choice& c, const grpc::Status& status);
  void Complete();
  void FailBeforeFirstByte(const grpc::Status& status);
  void FailStream(Choice& c, const std::string& message);
  void Finish();
  UsageCounts TotalUsage() const;
  std::vector<LogprobEntry> Logprobs(const r1serve::v1::GenerateResponse& m) const;
  // Reasoning kept or dropped (include_reasoning), content parsed for tool calls.
  void SendChatDelta(Choice& c, bool first, SplitText d, const std::vector<LogprobEntry>* lps);
  ToolCallParser NewToolParser();
  const char* FinishReasonOf(const Choice& c, int tool_calls) const;

  GatewayContext* ctx_;
  std::shared_ptr<ResponseSink> sink_;
  std::shared_ptr<Strand> strand_;
  GenParams params_;
  std::string route_;
  ResponseMeta meta_;
  Clock::TimePoint start_;
  std::vector<std::unique_ptr<Choice>> choices_;
  size_t finished_ = 0;
  bool stream_started_ = false;
  bool first_token_seen_ = false;
  bool done_ = false;
};

}  // namespace r1::gw
