#include "gateway/upstream/attempt.h"

#include <cstdio>

#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

const char* AttemptEndName(AttemptEnd e) {
  switch (e) {
    case AttemptEnd::kCall: return "call";
    case AttemptEnd::kFirstTokenTimeout: return "first_token_timeout";
    case AttemptEnd::kStallTimeout: return "stalled";
    case AttemptEnd::kWorkerSuspect: return "worker_suspect";
    case AttemptEnd::kBadMessage: return "bad_message";
  }
  return "?";
}

std::shared_ptr<Attempt> Attempt::Start(const AttemptEnv& env, std::shared_ptr<Strand> strand,
                                        WorkerLease lease,
                                        const r1serve::v1::GenerateRequest& request,
                                        MessageFn on_message, EndFn on_end) {
  std::shared_ptr<Attempt> a(new Attempt(env, std::move(strand), std::move(lease),
                                         std::move(on_message), std::move(on_end)));
  a->Begin(request);
  return a;
}

Attempt::Attempt(const AttemptEnv& env, std::shared_ptr<Strand> strand, WorkerLease lease,
                 MessageFn on_message, EndFn on_end)
    : env_(env),
      strand_(std::move(strand)),
      lease_(std::move(lease)),
      watch_timer_(strand_->NewTimer()),
      on_message_(std::move(on_message)),
      on_end_(std::move(on_end)) {}

// The lease's destructor abandons it if the attempt never ended (its strand stopped).
Attempt::~Attempt() {
  if (suspect_listener_) lease_.worker().RemoveSuspectListener(suspect_listener_);
}

void Attempt::Begin(const r1serve::v1::GenerateRequest& request) {
  started_at_ = env_.clock->Now();
  finals_left_ = request.n() > 1 ? request.n() : 1;
  finished_.assign(finals_left_, false);
  ArmWatch();
  std::weak_ptr<Attempt> weak = weak_from_this();
  std::shared_ptr<Strand> strand = strand_;
  suspect_listener_ = lease_.worker().AddSuspectListener([weak, strand] {
    strand->Post([weak] {
      if (auto self = weak.lock()) self->OnWorkerSuspect();
    });
  });
  // The call's callbacks hold the attempt until the call is done; they run on gRPC threads
  // and only hop onto the strand.
  auto self = shared_from_this();
  const Clock::WallTime deadline =
      env_.clock->WallNow() +
      std::chrono::duration_cast<Clock::WallTime::duration>(env_.call_timeout);
  call_ = env_.start_call(
      lease_.worker(), request, deadline,
      [self](r1serve::v1::GenerateResponse&& m) {
        self->strand_->Post(
            [self, m = std::move(m)]() mutable { self->OnMessage(std::move(m)); });
      },
      [self](const grpc::Status& status) {
        self->strand_->Post([self, status] { self->OnCallDone(status); });
      });
}

// One timer serves both limits, and messages do not touch it: when it fires early (a message
// came since it was armed) it is armed again for the rest. A fast stream thus costs a timer
// operation per stall period, not per token.
void Attempt::ArmWatch() {
  const Clock::Duration limit = got_first_ ? env_.stall_timeout : env_.first_token_timeout;
  if (limit <= Clock::Duration::zero()) return watch_timer_->Cancel();
  const Clock::TimePoint due = (got_first_ ? last_message_at_ : started_at_) + limit;
  std::weak_ptr<Attempt> weak = weak_from_this();
  watch_timer_->Start(std::max(due - env_.clock->Now(), Clock::Duration::zero()), [weak] {
    if (auto self = weak.lock()) self->OnWatch();
  });
}

void Attempt::OnWatch() {
  if (ended_) return;
  const Clock::Duration limit = got_first_ ? env_.stall_timeout : env_.first_token_timeout;
  const Clock::TimePoint due = (got_first_ ? last_message_at_ : started_at_) + limit;
  if (env_.clock->Now() < due) return ArmWatch();
  char message[200];
  std::snprintf(message, sizeof message,
                got_first_ ? "worker %s sent nothing for %g s mid-stream (--stall-timeout)"
                           : "worker %s sent no token within %g s (--first-token-timeout)",
                lease_.worker().address().c_str(), std::chrono::duration<double>(limit).count());
  lease_.MarkSuspect();
  GiveUp(got_first_ ? AttemptEnd::kStallTimeout : AttemptEnd::kFirstTokenTimeout,
         grpc::StatusCode::DEADLINE_EXCEEDED, message);
}

void Attempt::OnWorkerSuspect() {
  if (ended_) return;
  GiveUp(AttemptEnd::kWorkerSuspect, grpc::StatusCode::UNAVAILABLE,
         "worker " + lease_.worker().address() + " failed its health checks");
}

void Attempt::GiveUp(AttemptEnd cause, grpc::StatusCode code, const std::string& message) {
  if (call_) call_->Cancel();
  cause_ = cause;
  End(grpc::Status(code, message));
}

void Attempt::OnMessage(r1serve::v1::GenerateResponse&& m) {
  if (ended_) return;
  const uint32_t k = m.choice_index();
  if (k >= finished_.size() || finished_[k]) {
    char message[200];
    std::snprintf(message, sizeof message,
                  k >= finished_.size()
                      ? "worker %s sent choice_index %u for a request of %zu choice(s)"
                      : "worker %s sent a message for choice %u after its last one",
                  lease_.worker().address().c_str(), k, finished_.size());
    return GiveUp(AttemptEnd::kBadMessage, grpc::StatusCode::INTERNAL, message);
  }
  last_message_at_ = env_.clock->Now();
  if (!got_first_) {
    got_first_ = true;
    lease_.Answered();
    ArmWatch();  // from the first-token limit to the stall limit
  }
  if (m.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
    finished_[k] = true;
    if (m.finish_reason() == r1serve::v1::FINISH_REASON_ERROR && !failed_) {
      failed_ = true;
      error_message_ = m.error_message();
    }
    // Every choice is complete: only the call's status is to come.
    if (--finals_left_ == 0) watch_timer_->Cancel();
  }
  if (on_message_) on_message_(std::move(m));
  if (!ended_ && call_) call_->ReadNext();  // the next message once this one was taken
}

void Attempt::OnCallDone(const grpc::Status& status) {
  if (ended_) return;
  End(Outcome(status));
}

grpc::Status Attempt::Outcome(const grpc::Status& call_status) const {
  if (!call_status.ok()) return call_status;
  if (failed_)
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        error_message_.empty() ? "the worker failed" : error_message_);
  if (finals_left_ > 0)
    return grpc::Status(grpc::StatusCode::UNKNOWN,
                        "the worker's stream ended without a finish reason");
  return grpc::Status::OK;
}

void Attempt::StopWatching() {
  watch_timer_->Cancel();
  if (suspect_listener_) lease_.worker().RemoveSuspectListener(suspect_listener_);
  suspect_listener_ = 0;
}

void Attempt::End(const grpc::Status& outcome) {
  ended_ = true;
  StopWatching();
  lease_.Release(outcome.error_code());
  EndFn on_end = std::move(on_end_);
  on_end_ = nullptr;
  on_message_ = nullptr;  // drops what the owner's callbacks hold
  if (on_end) on_end(outcome);
}

void Attempt::PauseReading(bool pause) {
  if (!ended_ && call_) call_->PauseReading(pause);
}

void Attempt::Cancel() {
  if (ended_) return;
  ended_ = true;
  StopWatching();
  if (call_) call_->Cancel();
  lease_.Abandon();
  on_end_ = nullptr;
  on_message_ = nullptr;
}

}  // namespace r1::gw
