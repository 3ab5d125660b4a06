// Where an exchange writes its response: the HTTP session in production, a recorder in unit
// tests. Calls come on the exchange's strand.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/http/session.h"

namespace r1::gw {

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // A whole response.
  virtual void SendResponse(unsigned status, std::string_view content_type, std::string body,
                            const http::Headers& extra) = 0;
  // A server-sent-event stream: start, pieces ("data: ...\n\n"), end.
  virtual void StartStream() = 0;
  virtual void SendChunk(std::string_view data) = 0;
  virtual void EndStream() = 0;
  // Runs once if the client goes away before the response ended; null clears it.
  virtual void SetCancelHandler(std::function<void()> handler) = 0;
  // Output flow control: called with true when the client's queued output reached its cap
  // (stop reading the worker streams), with false when it drained (read again); null clears it.
  virtual void SetFlowHandler(std::function<void(bool pause)> handler) = 0;
};

class SessionSink final : public ResponseSink {
 public:
  explicit SessionSink(std::shared_ptr<http::Session> session) : session_(std::move(session)) {}
  void SendResponse(unsigned status, std::string_view content_type, std::string body,
                    const http::Headers& extra) override {
    session_->SendResponse(status, content_type, std::move(body), extra);
  }
  void StartStream() override { session_->StartStream(); }
  void SendChunk(std::string_view data) override { session_->SendChunk(data); }
  void EndStream() override { session_->EndStream(); }
  void SetCancelHandler(std::function<void()> handler) override {
    session_->SetCancelHandler(std::move(handler));
  }
  void SetFlowHandler(std::function<void(bool pause)> handler) override {
    session_->SetFlowHandler(std::move(handler));
  }
  http::Session& session() { return *session_; }

 private:
  std::shared_ptr<http::Session> session_;
};

}  // namespace r1::gw
