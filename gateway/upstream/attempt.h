// One try of one Generate call on one worker (Envoy's UpstreamRequest): a prompt's n choices
// (GenerateRequest.n) or one choice. It owns:
//   - the streaming Generate call, with its own gRPC deadline;
//   - the lease on the worker (an active stream and the breaker's permission);
//   - its watch on the worker: the first-token timeout (nothing before it) and the stall
//     timeout (nothing for that long after the first token) abandon an unresponsive worker,
//     count against it (DEADLINE_EXCEEDED) and mark it suspect until a health poll passes;
//     and the health checker's verdict (the worker failed its polls) abandons it at once
//     (UNAVAILABLE). A hung worker costs seconds, not the request deadline;
//   - the outcome: what the call's end means (OK only when every choice ended with a proper
//     finish reason), reported once to the breaker through the lease and once to the owner;
//   - the stream's shape: a message whose choice_index is outside the request's choices, or
//     that follows its choice's last message, ends the attempt (kBadMessage, INTERNAL) before
//     the owner sees it.
//
// Everything runs on the owner's strand; the call's callbacks are posted there. An attempt
// ends exactly once: when its call ends, when a timeout fires, when its worker turns suspect, or
// when its owner cancels it. After that its owner hears nothing more from it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

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
  Clock::Duration stall_timeout{};        // most time between messages after the first; zero: none
  Clock::Duration call_timeout{};         // each call's gRPC deadline, from its start
};

// Why an attempt ended.
enum class AttemptEnd {
  kCall,               // the call ended (its status and finish reason say how)
  kFirstTokenTimeout,  // DEADLINE_EXCEEDED: nothing within first_token_timeout
  kStallTimeout,       // DEADLINE_EXCEEDED: nothing for stall_timeout mid-stream
  kWorkerSuspect,      // UNAVAILABLE: the health checker gave up on the worker
  kBadMessage,         // INTERNAL: the worker sent a message for no choice of the request
};
const char* AttemptEndName(AttemptEnd e);

class Attempt : public std::enable_shared_from_this<Attempt> {
 public:
  using MessageFn = std::function<void(r1serve::v1::GenerateResponse&&)>;
  // OK when every choice ended with a finish reason other than ERROR; otherwise the failure.
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
  AttemptEnd end_cause() const { return cause_; }

 private:
  Attempt(const AttemptEnv& env, std::shared_ptr<Strand> strand, WorkerLease lease,
          MessageFn on_message, EndFn on_end);
  void Begin(const r1serve::v1::GenerateRequest& request);
  void OnMessage(r1serve::v1::GenerateResponse&& m);
  void OnCallDone(const grpc::Status& status);
  // The watch timer: due at the first-token deadline, then at the stall deadline.
  void ArmWatch();
  void OnWatch();
  void OnWorkerSuspect();
  void GiveUp(AttemptEnd cause, grpc::StatusCode code, const std::string& message);
  grpc::Status Outcome(const grpc::Status& call_status) const;
  void End(const grpc::Status& outcome);
  void StopWatching();

  const AttemptEnv env_;
  std::shared_ptr<Strand> strand_;
  WorkerLease lease_;
  std::unique_ptr<Timer> watch_timer_;
  Clock::TimePoint started_at_{};
  Clock::TimePoint last_message_at_{};
  uint64_t suspect_listener_ = 0;
  std::shared_ptr<UpstreamCall> call_;
  MessageFn on_message_;
  EndFn on_end_;
  bool got_first_ = false;
  bool ended_ = false;
  AttemptEnd cause_ = AttemptEnd::kCall;
  std::vector<bool> finished_;  // per choice: its last message came
  size_t finals_left_ = 1;      // choices without their last message
  bool failed_ = false;         // some choice finished with FINISH_REASON_ERROR
  std::string error_message_;   // the first such choice's
};

}  // namespace r1::gw
