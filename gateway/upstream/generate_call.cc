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
  stub->async()->Generate(&call->context_, &request, call.get());
  call->StartRead(&call->response_);
  call->StartCall();
  return call;
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  on_message_(std::move(response_));
  response_.Clear();
  StartRead(&response_);
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
