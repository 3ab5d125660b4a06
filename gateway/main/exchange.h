// One generation request from parse to last byte. Lives on its session's strand; gRPC
// callbacks are posted there. Retries happen only while nothing has reached the client.
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
  void Attempt();
  void OnMessage(int attempt, r1serve::v1::GenerateResponse&& m);
  void OnDone(int attempt, const grpc::Status& status);
  void OnClientGone();
  void Complete();
  void FailBeforeFirstByte(int code, const std::string& message);
  void FailStream(const std::string& message);
  void ResetOutput();
  void Finish(unsigned http_status);
  std::vector<LogprobEntry> Logprobs(const r1serve::v1::GenerateResponse& m) const;

  GatewayContext* ctx_;
  std::shared_ptr<http::Session> session_;
  GenParams params_;
  std::string route_;
  r1serve::v1::GenerateRequest proto_;
  ResponseMeta meta_;
  Clock::TimePoint start_;
  std::chrono::system_clock::time_point deadline_;
  JitteredBackoff backoff_;
  boost::asio::steady_timer timer_;

  std::shared_ptr<GenerateCall> call_;
  std::shared_ptr<Worker> worker_;
  std::vector<const Worker*> tried_;
  int attempt_ = 0;
  bool in_retry_ = false;    // holds retry budget
  bool done_ = false;
  bool got_first_ = false;   // the current attempt sent a message
  bool sent_to_client_ = false;  // bytes of a streamed response went out
  std::optional<grpc::Status> last_failure_;

  // Output so far (the current attempt).
  ReasoningSplitter splitter_;
  std::string text_;
  std::vector<LogprobEntry> logprobs_;
  size_t text_offset_ = 0;
  r1serve::v1::FinishReason finish_ = r1serve::v1::FINISH_REASON_UNSPECIFIED;
  std::string error_message_;
  UsageCounts usage_;
};

}  // namespace r1::gw
