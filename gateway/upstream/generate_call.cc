#include "gateway/upstream/generate_call.h"

#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

std::shared_ptr<GenerateCall> GenerateCall::Start(r1serve::v1::Inference::Stub* stub,
                                                  const r1serve::v1::GenerateRequest& request,
                                                  Clock::WallTime deadline,
                                                  MessageFn on_message, DoneFn on_done) {
  std::shared_ptr<GenerateCall> call(new GenerateCall(std::move(on_message), std::move(on_done)));
  call->self_ = call;
  call->context_.set_deadline(deadline);
  call->finals_left_ = request.n() > 1 ? static_cast<int>(request.n()) : 1;
  stub->async()->Generate(&call->context_, &request, call.get());
  call->StartRead(&call->response_);
  call->StartCall();
  return call;
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  r1serve::v1::GenerateResponse m = std::move(response_);
  response_.Clear();
  const bool last =
      m.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED && --finals_left_ == 0;
  {
    // Before the message is handed over: the owner's ReadNext for it may come at once.
    std::lock_guard<std::mutex> lock(mu_);
    ++unacked_;
  }
  on_message_(std::move(m));
  // The next read is due only now: started earlier (by a ReadNext on the owner's thread), its
  // message could be handed over before this one.
  bool read_on = last;
  if (!last) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return;  // no read and no hold: OnDone follows
    due_ = true;
    read_on = TakeDueReadLocked();
    if (!read_on) AddHold();
  }
  if (read_on) StartRead(&response_);
}

bool GenerateCall::TakeDueReadLocked() {
  if (!due_ || unacked_ >= kReadAhead || paused_ || cancelled_) return false;
  due_ = false;
  return true;
}

void GenerateCall::ReadNext() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (unacked_ > 0) --unacked_;
    if (!TakeDueReadLocked()) return;
  }
  StartRead(&response_);
  RemoveHold();
}

void GenerateCall::PauseReading(bool pause) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = pause;
    if (!TakeDueReadLocked()) return;
  }
  StartRead(&response_);
  RemoveHold();
}

void GenerateCall::Cancel() {
  context_.TryCancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (!due_) return;
    due_ = false;
  }
  RemoveHold();  // OnDone follows, with CANCELLED
}

void GenerateCall::OnDone(const grpc::Status& status) {
  on_done_(status);
  on_message_ = nullptr;
  on_done_ = nullptr;
  std::shared_ptr<GenerateCall> self = std::move(self_);  // may free this object last
}

std::shared_ptr<UpstreamCall> StartGenerateCall(Worker& worker,
                                                const r1serve::v1::GenerateRequest& request,
                                                Clock::WallTime deadline, CallMessageFn on_message,
                                                CallDoneFn on_done) {
  return GenerateCall::Start(worker.stub(), request, deadline, std::move(on_message),
                             std::move(on_done));
}

}  // namespace r1::gw
