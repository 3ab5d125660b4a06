// One generation request from parse to last byte (Envoy's router filter): the fan-out over its
// prompts (one Generate call each, carrying the prompt's n choices: GenerateRequest.n), the
// demultiplexing of each call's messages by choice_index, and the formatting of what comes
// back, as SSE chunks or one JSON body. Each call runs as a series of Attempts
// (upstream/attempt.h):
//  - while none of its choices has output, a failed attempt is retried, the whole call, as
//    the RetryPolicy says;
//  - after that, each unfinished choice goes on alone (GenerateRequest.n unset, the seed the
//    worker gave it), in its own series of attempts: a worker that dies, stalls, turns
//    suspect or fails the stream (the call, or the one choice: FINISH_REASON_ERROR) is
//    replaced by resuming the choice elsewhere (Dynamo's request migration): the new attempt
//    carries the prompt plus the token ids already received (GenerateRequest.resume),
//    max_tokens less those, and the same seed, and its output continues the client's stream
//    where it stopped. At most --max-resumes times per choice; then the stream ends with an
//    error event. A choice that had no output yet starts again alone, as a retry.
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
#include "gateway/upstream/prefix_index.h"
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
  struct Group;
  struct Choice {
    Choice(int index, RetryState retry, std::unique_ptr<Timer> backoff, bool split,
           ToolCallParser tools)
        : index(index), retry(std::move(retry)), backoff(std::move(backoff)), splitter(split),
          tools(std::move(tools)) {}
    void ResetOutput();

    const int index;
    Group* group = nullptr;  // its prompt's
    bool in_call = false;    // its output comes from the group's call, not an attempt of its own
    r1serve::v1::GenerateRequest proto;  // as a call of its own (ChoiceRequest)
    RetryState retry;
    std::unique_ptr<Timer> backoff;  // the wait before the next attempt
    std::shared_ptr<Attempt> attempt;  // the current one of its own, while it runs
    std::vector<const Worker*> tried;
    std::optional<grpc::Status> last_failure;
    bool finished = false;
    bool answered = false;  // the current attempt (or the group's call) sent it a message
    int resumes = 0;
    // The choice's output so far (over resumed attempts; reset by a retry from scratch).
    bool started = false;  // some output arrived (streamed: the client has some)
    std::vector<int32_t> output_ids;
    ReasoningSplitter splitter;
    ToolCallParser tools;  // streamed: the calls in the content after the reasoning
    std::string text;
    std::vector<LogprobEntry> logprobs;
    size_t text_offset = 0;
    r1serve::v1::FinishReason finish = r1serve::v1::FINISH_REASON_UNSPECIFIED;
    UsageCounts usage;
  };

  // One prompt's choices and the one Generate call that serves them all until one of them
  // needs a call of its own.
  struct Group {
    Group(RetryState retry, std::unique_ptr<Timer> backoff)
        : retry(std::move(retry)), backoff(std::move(backoff)) {}
    r1serve::v1::GenerateRequest proto;  // n choices
    std::shared_ptr<const RouteKey> route;  // the prompt as routing sees it
    RetryState retry;
    std::unique_ptr<Timer> backoff;
    std::shared_ptr<Attempt> attempt;
    std::vector<const Worker*> tried;
    std::optional<grpc::Status> last_failure;
    std::vector<Choice*> choices;  // by choice_index
    // echo: the prompt's text and log-probabilities, from the first message that had them
    // (the call's first, choice 0's), for every choice's first output.
    bool has_prompt = false;
    r1serve::v1::GenerateResponse prompt;
  };

  // Starts an attempt of `unit` (a Group or a Choice: its proto) on the lease's worker, paused
  // while the client's queue is full; its events come to the two members, on the strand.
  template <typename Unit>
  std::shared_ptr<Attempt> Launch(
      WorkerLease lease, Unit& unit,
      void (Exchange::*on_message)(Unit&, r1serve::v1::GenerateResponse&&),
      void (Exchange::*on_end)(Unit&, const grpc::Status&));
  void StartGroupAttempt(Group& g);
  void OnGroupMessage(Group& g, r1serve::v1::GenerateResponse&& m);
  void OnGroupEnd(Group& g, const grpc::Status& outcome);
  void StartAttempt(Choice& c);
  void OnMessage(Choice& c, r1serve::v1::GenerateResponse&& m);
  // A choice's output, from its own attempt or its group's call.
  void OnOutput(Choice& c, r1serve::v1::GenerateResponse&& m);
  // A choice's first message in an attempt: the retry budget, the first-token metric and the
  // stream's header.
  void NoteAnswered(Choice& c, RetryState& retry);
  void OnAttemptEnd(Choice& c, const grpc::Status& outcome);
  // The attempt that served the choice (its own or its group's) failed it: resume, retry or
  // fail.
  void ChoiceFailedOn(Choice& c, const Attempt& attempt, const grpc::Status& outcome);
  // The choice leaves its group's call (which failed it) with the call's workers as tried.
  void Detach(Choice& c);
  // No worker to pick: the last failure, or 503.
  void NoWorker(Choice& c, const std::optional<grpc::Status>& last_failure);
  // After a failure mid-output: true when the choice goes on on another worker.
  bool TryResume(Choice& c, const Attempt& attempt, const grpc::Status& outcome);
  void OnClientGone();
  void OnFlow(bool pause);
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
  std::vector<std::unique_ptr<Group>> groups_;
  std::vector<std::unique_ptr<Choice>> choices_;
  size_t finished_ = 0;
  bool stream_started_ = false;
  bool first_token_seen_ = false;
  bool done_ = false;
  bool reading_paused_ = false;  // the client's output queue is full: attempts read nothing
};

}  // namespace r1::gw
