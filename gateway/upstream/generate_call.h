// One streaming Generate call on the gRPC callback client API. Messages and the final status
// are handed to the owner's callbacks on gRPC threads, in order. Reading never pauses: one
// generation is bounded by the model's length limit, so a slow client costs bounded memory,
// and the final status can never overtake unread messages. Cancel() cancels the call at once
// (a client that went away).
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include <grpcpp/grpcpp.h>

#include "gateway/upstream/upstream_call.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::gw {

class GenerateCall final : public grpc::ClientReadReactor<r1serve::v1::GenerateResponse>,
                           public UpstreamCall {
 public:
  using MessageFn = CallMessageFn;
  using DoneFn = CallDoneFn;

  // Starts the call. The object stays alive until OnDone ran and the caller dropped it.
  static std::shared_ptr<GenerateCall> Start(r1serve::v1::Inference::Stub* stub,
                                             const r1serve::v1::GenerateRequest& request,
                                             Clock::WallTime deadline,
                                             MessageFn on_message, DoneFn on_done);
  void Cancel() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  GenerateCall(MessageFn on_message, DoneFn on_done)
      : on_message_(std::move(on_message)), on_done_(std::move(on_done)) {}

  grpc::ClientContext context_;
  r1serve::v1::GenerateResponse response_;
  MessageFn on_message_;
  DoneFn on_done_;
  std::shared_ptr<GenerateCall> self_;  // keeps the reactor alive until OnDone
};

// The StartCallFn of production: GenerateCall on the worker's channel.
std::shared_ptr<UpstreamCall> StartGenerateCall(Worker& worker,
                                                const r1serve::v1::GenerateRequest& request,
                                                Clock::WallTime deadline, CallMessageFn on_message,
                                                CallDoneFn on_done);

}  // namespace r1::gw
