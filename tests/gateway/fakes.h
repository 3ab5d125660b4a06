// Hand-driven stand-ins for the gateway's unit tests: a strand whose posted work and timers
// run when the test says (on a FakeClock), scripted Generate calls, and a recording response
// sink. Single-threaded: the test thread plays the gRPC threads and the strand.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/clock.h"
#include "gateway/main/response_sink.h"
#include "gateway/upstream/strand.h"
#include "gateway/upstream/upstream_call.h"

namespace r1::gw::testing {

class ManualStrand final : public Strand {
 public:
  explicit ManualStrand(FakeClock* clock) : clock_(clock) {}
  void Post(std::function<void()> fn) override { posted_.push_back(std::move(fn)); }
  std::unique_ptr<Timer> NewTimer() override;

  // Runs posted work, and what that posts, until none is left.
  void RunPending() {
    while (!posted_.empty()) {
      auto fn = std::move(posted_.front());
      posted_.pop_front();
      fn();
    }
  }
  // Moves the clock by `d`, firing the timers that fall due in time order (and running what
  // they post) on the way.
  void Advance(Clock::Duration d) {
    RunPending();
    const Clock::TimePoint end = clock_->Now() + d;
    for (;;) {
      auto next = timers_.end();
      for (auto it = timers_.begin(); it != timers_.end(); ++it)
        if (it->second.at <= end && (next == timers_.end() || it->second.at < next->second.at))
          next = it;
      if (next == timers_.end()) break;
      clock_->Advance(next->second.at - clock_->Now());
      auto fn = std::move(next->second.fn);
      timers_.erase(next);
      fn();
      RunPending();
    }
    clock_->Advance(end - clock_->Now());
  }
  size_t armed_timers() const { return timers_.size(); }
  // Forgets posted work without running it, as a stopped io_context does.
  void DropPending() { posted_.clear(); }

 private:
  friend class ManualTimer;
  struct Armed {
    Clock::TimePoint at;
    std::function<void()> fn;
  };
  FakeClock* clock_;
  std::deque<std::function<void()>> posted_;
  std::map<uint64_t, Armed> timers_;
  uint64_t next_id_ = 1;
};

class ManualTimer final : public Timer {
 public:
  explicit ManualTimer(ManualStrand* strand) : strand_(strand) {}
  ~ManualTimer() override { Cancel(); }
  void Start(Clock::Duration delay, std::function<void()> fn) override {
    Cancel();
    id_ = strand_->next_id_++;
    strand_->timers_[id_] = {strand_->clock_->Now() + delay, std::move(fn)};
  }
  void Cancel() override {
    if (id_) strand_->timers_.erase(id_);
    id_ = 0;
  }

 private:
  ManualStrand* strand_;
  uint64_t id_ = 0;
};

inline std::unique_ptr<Timer> ManualStrand::NewTimer() {
  return std::make_unique<ManualTimer>(this);
}

// One scripted Generate call: the test sends its messages and ends it.
struct FakeCall final : UpstreamCall {
  void Cancel() override { cancelled = true; }
  void ReadNext() override { ++taken; }
  void PauseReading(bool pause) override { paused = pause; }
  void Send(r1serve::v1::GenerateResponse m) { on_message(std::move(m)); }
  // Ends the call as gRPC does: the done callback once, then the callbacks are dropped.
  void Done(const grpc::Status& status) {
    ASSERT_FALSE(done) << "a call ends once";
    done = true;
    CallDoneFn fn = std::move(on_done);
    on_message = nullptr;
    on_done = nullptr;
    fn(status);
  }

  Worker* worker = nullptr;
  r1serve::v1::GenerateRequest request;
  Clock::WallTime deadline;
  CallMessageFn on_message;
  CallDoneFn on_done;
  bool cancelled = false;
  bool paused = false;
  int taken = 0;  // messages the owner took (ReadNext calls)
  bool done = false;
};

// A StartCallFn that records every call it starts.
struct FakeCalls {
  StartCallFn Starter() {
    return [this](Worker& w, const r1serve::v1::GenerateRequest& r, Clock::WallTime deadline,
                  CallMessageFn on_message, CallDoneFn on_done) {
      auto c = std::make_shared<FakeCall>();
      c->worker = &w;
      c->request = r;
      c->deadline = deadline;
      c->on_message = std::move(on_message);
      c->on_done = std::move(on_done);
      calls.push_back(c);
      return c;
    };
  }
  std::vector<std::shared_ptr<FakeCall>> calls;
};

// A message with text; `finish` set makes it the last one, with usage.
inline r1serve::v1::GenerateResponse Piece(
    const std::string& text,
    r1serve::v1::FinishReason finish = r1serve::v1::FINISH_REASON_UNSPECIFIED,
    uint32_t completion_tokens = 0) {
  r1serve::v1::GenerateResponse m;
  m.set_text(text);
  m.set_finish_reason(finish);
  if (finish != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
    m.mutable_usage()->set_prompt_tokens(5);
    m.mutable_usage()->set_completion_tokens(completion_tokens);
  }
  return m;
}

// A message with text and the token ids that made it, as workers send them.
inline r1serve::v1::GenerateResponse Tokens(
    const std::string& text, std::vector<int32_t> ids,
    r1serve::v1::FinishReason finish = r1serve::v1::FINISH_REASON_UNSPECIFIED,
    uint32_t completion_tokens = 0) {
  r1serve::v1::GenerateResponse m = Piece(text, finish, completion_tokens);
  for (int32_t id : ids) m.add_token_ids(id);
  return m;
}

// Records what an exchange writes.
struct FakeSink final : ResponseSink {
  void SendResponse(unsigned s, std::string_view type, std::string b,
                    const http::Headers& extra) override {
    status = s;
    content_type = std::string(type);
    body = std::move(b);
    headers = extra;
    ended = true;
  }
  void StartStream() override {
    status = 200;
    streaming = true;
  }
  void SendChunk(std::string_view data) override { chunks.emplace_back(data); }
  void EndStream() override { ended = true; }
  void SetCancelHandler(std::function<void()> handler) override { cancel = std::move(handler); }
  void SetFlowHandler(std::function<void(bool)> handler) override { flow = std::move(handler); }
  // The client goes away.
  void Leave() {
    if (cancel) cancel();
  }

  unsigned status = 0;
  std::string content_type;
  std::string body;
  http::Headers headers;
  bool streaming = false;
  bool ended = false;
  std::vector<std::string> chunks;
  std::function<void()> cancel;
  std::function<void(bool)> flow;
};

}  // namespace r1::gw::testing
