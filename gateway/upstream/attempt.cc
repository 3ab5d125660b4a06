#include "gateway/upstream/attempt.h"

#include <cstdio>

#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

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
      first_token_timer_(strand_->NewTimer()),
      on_message_(std::move(on_message)),
      on_end_(std::move(on_end)) {}

// The lease's destructor abandons it if the attempt never ended (its strand stopped).
Attempt::~Attempt() = default;

void Attempt::Begin(const r1serve::v1::GenerateRequest& request) {
  if (env_.first_token_timeout > Clock::Duration::zero()) {
    std::weak_ptr<Attempt> weak = weak_from_this();
    first_token_timer_->Start(env_.first_token_timeout, [weak] {
      if (auto self = weak.lock()) self->OnFirstTokenTimeout();
    });
  }
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

void Attempt::OnMessage(r1serve::v1::GenerateResponse&& m) {
  if (ended_) return;
  if (!got_first_) {
    got_first_ = true;
    first_token_timer_->Cancel();
    lease_.Answered();
  }
  if (m.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
    finish_ = m.finish_reason();
    error_message_ = m.error_message();
  }
  if (on_message_) on_message_(std::move(m));
  if (!ended_ && call_) call_->ReadNext();  // the next message once this one was taken
}

void Attempt::OnCallDone(const grpc::Status& status) {
  if (ended_) return;
  End(Outcome(status));
}

void Attempt::OnFirstTokenTimeout() {
  if (ended_ || got_first_) return;
  if (call_) call_->Cancel();
  char message[160];
  std::snprintf(message, sizeof message,
                "worker %s sent no token within %g s (--first-token-timeout)",
                lease_.worker().address().c_str(),
                std::chrono::duration<double>(env_.first_token_timeout).count());
  End(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, message));
}

grpc::Status Attempt::Outcome(const grpc::Status& call_status) const {
  if (!call_status.ok()) return call_status;
  if (finish_ == r1serve::v1::FINISH_REASON_ERROR)
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        error_message_.empty() ? "the worker failed" : error_message_);
  if (finish_ == r1serve::v1::FINISH_REASON_UNSPECIFIED)
    return grpc::Status(grpc::StatusCode::UNKNOWN,
                        "the worker's stream ended without a finish reason");
  return grpc::Status::OK;
}

void Attempt::End(const grpc::Status& outcome) {
  ended_ = true;
  first_token_timer_->Cancel();
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
  first_token_timer_->Cancel();
  if (call_) call_->Cancel();
  lease_.Abandon();
  on_end_ = nullptr;
  on_message_ = nullptr;
}

}  // namespace r1::gw
