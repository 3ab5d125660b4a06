// One generation request from parse to last byte: one or more choices (n per prompt), each a
// streaming Generate call. Lives on its session's strand; gRPC callbacks are posted there.
// A choice is retried only while nothing of it has reached the client.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "gateway/main/gateway.h"
#include "gateway/openai/reasoning.h"
#include "gateway/openai/request.h"
#include "gateway/openai/response.h"
#include "gateway/upstream/backoff.h"
#include "gateway/upstream/generate_call.h"

namespace r1::gw {

class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(GatewayContext* ctx, std::shared_ptr<http::Session> session, GenParams params,
           std::string route);
  ~Exchange();
  // On the session's strand.
  void Start();

 private:
  struct Choice {
    Choice(int index, GatewayContext* ctx, const boost::asio::any_io_executor& ex, bool split)
        : index(index),
          backoff(ctx->options.retry_base_ms, ctx->options.retry_cap_ms, ctx->random),
          timer(ex),
          splitter(split) {}
    void ResetOutput();

    const int index;
    r1serve::v1::GenerateRequest proto;
    JitteredBackoff backoff;
    boost::asio::steady_timer timer;
    std::shared_ptr<GenerateCall> call;
    std::shared_ptr<Worker> worker;
    std::vector<const Worker*> tried;
    int attempts = 0;
    int attempt_id = 0;  // callbacks of earlier attempts are dropped
    bool in_retry = false;  // holds retry budget
    bool got_first = false;  // the current attempt sent a message
    bool sent = false;       // some of this choice reached the client
    bool finished = false;
    std::optional<grpc::Status> last_failure;
    ReasoningSplitter splitter;
    std::string text;
    std::vector<LogprobEntry> logprobs;
    size_t text_offset = 0;
    r1serve::v1::FinishReason finish = r1serve::v1::FINISH_REASON_UNSPECIFIED;
    std::string error_message;
    UsageCounts usage;
  };

  void Attempt(Choice& c);
  void OnMessage(Choice& c, int id, r1serve::v1::GenerateResponse&& m);
  void OnDone(Choice& c, int id, const grpc::Status& status);
  void OnClientGone();
  void MaybeFinishEarly(Choice& c);
  void ChoiceFinished(Choice& c);
  void ChoiceFailed(Choice& c, int code, const std::string& message);
  void Complete();
  void FailBeforeFirstByte(int code, const std::string& message);
  void FailStream(Choice& c, const std::string& message);
  void Finish();
  UsageCounts TotalUsage() const;
  std::vector<LogprobEntry> Logprobs(const r1serve::v1::GenerateResponse& m) const;

  GatewayContext* ctx_;
  std::shared_ptr<http::Session> session_;
  GenParams params_;
  std::string route_;
  ResponseMeta meta_;
  Clock::TimePoint start_;
  std::chrono::system_clock::time_point deadline_;
  std::vector<std::unique_ptr<Choice>> choices_;
  size_t finished_ = 0;
  int next_attempt_id_ = 0;
  bool stream_started_ = false;
  bool first_token_seen_ = false;
  bool done_ = false;
};

}  // namespace r1::gw
