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

#include "r1serve/v1/inference.grpc.pb.h"

namespace r1::gw {

class GenerateCall : public grpc::ClientReadReactor<r1serve::v1::GenerateResponse> {
 public:
  using MessageFn = std::function<void(r1serve::v1::GenerateResponse&&)>;
  using DoneFn = std::function<void(const grpc::Status&)>;

  // Starts the call. The object stays alive until OnDone ran and the caller dropped it.
  static std::shared_ptr<GenerateCall> Start(r1serve::v1::Inference::Stub* stub,
                                             const r1serve::v1::GenerateRequest& request,
                                             std::chrono::system_clock::time_point deadline,
                                             MessageFn on_message, DoneFn on_done);
  void Cancel() { context_.TryCancel(); }

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

}  // namespace r1::gw
