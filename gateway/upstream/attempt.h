// One try of one choice on one worker (Envoy's UpstreamRequest). It owns:
//   - the streaming Generate call, with its own gRPC deadline;
//   - the lease on the worker (an active stream and the breaker's permission);
//   - the first-token timeout: a worker that sends nothing in time is abandoned and counted
//     against (DEADLINE_EXCEEDED), so a hung worker costs seconds, not the request deadline;
//   - the outcome: what the call's end means (OK only for a proper finish reason), reported
//     once to the breaker through the lease and once to the owner.
//
// Everything runs on the owner's strand; the call's callbacks are posted there. An attempt
// ends exactly once: when its call ends, when its first-token timeout fires, or when its owner
// cancels it. After that its owner hears nothing more from it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/clock.h"
#include "gateway/upstream/strand.h"
#include "gateway/upstream/upstream_call.h"
#include "gateway/upstream/worker_lease.h"

namespace r1::gw {

// What every attempt of a gateway shares.
struct AttemptEnv {
  const Clock* clock = nullptr;
  StartCallFn start_call;
  Clock::Duration first_token_timeout{};  // zero: none
  Clock::Duration call_timeout{};         // each call's gRPC deadline, from its start
};

class Attempt : public std::enable_shared_from_this<Attempt> {
 public:
  using MessageFn = std::function<void(r1serve::v1::GenerateResponse&&)>;
  // OK when the stream ended with a finish reason other than ERROR; otherwise the failure.
  using EndFn = std::function<void(const grpc::Status&)>;

  // On the strand. Starts the call and the first-token timer.
  static std::shared_ptr<Attempt> Start(const AttemptEnv& env, std::shared_ptr<Strand> strand,
                                        WorkerLease lease,
                                        const r1serve::v1::GenerateRequest& request,
                                        MessageFn on_message, EndFn on_end);
  ~Attempt();

  // The owner gives up on the attempt: cancels the call, abandons the lease; no end event.
  void Cancel();
  // Stops (true) or resumes (false) reading the call's messages: output flow control.
  void PauseReading(bool pause);

  Worker& worker() const { return lease_.worker(); }
  bool got_first() const { return got_first_; }
  bool ended() const { return ended_; }

 private:
  Attempt(const AttemptEnv& env, std::shared_ptr<Strand> strand, WorkerLease lease,
          MessageFn on_message, EndFn on_end);
  void Begin(const r1serve::v1::GenerateRequest& request);
  void OnMessage(r1serve::v1::GenerateResponse&& m);
  void OnCallDone(const grpc::Status& status);
  void OnFirstTokenTimeout();
  grpc::Status Outcome(const grpc::Status& call_status) const;
  void End(const grpc::Status& outcome);

  const AttemptEnv env_;
  std::shared_ptr<Strand> strand_;
  WorkerLease lease_;
  std::unique_ptr<Timer> first_token_timer_;
  std::shared_ptr<UpstreamCall> call_;
  MessageFn on_message_;
  EndFn on_end_;
  bool got_first_ = false;
  bool ended_ = false;
  r1serve::v1::FinishReason finish_ = r1serve::v1::FINISH_REASON_UNSPECIFIED;
  std::string error_message_;  // with FINISH_REASON_ERROR
};

}  // namespace r1::gw
