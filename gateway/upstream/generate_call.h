// One streaming Generate call on the gRPC callback client API. Messages and the final status
// are handed to the owner's callbacks on gRPC threads, in order. At most kReadAhead messages
// are handed over and not yet taken (ReadNext()), so a busy owner does not pile them up, and
// no read starts while PauseReading(true) holds it (a client that stopped reading); what
// the worker sends meanwhile waits in the HTTP/2 stream's flow-control window, and then the
// worker's writes wait. The status cannot overtake unread messages (the transport completes
// it only once every received message was read), and after the last message with a finish
// reason (one per choice: GenerateRequest.n) the call always reads on, to collect its status.
// Cancel() cancels the call at once (a client that went away), paused or not.
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
  void Cancel() override;
  void ReadNext() override;
  void PauseReading(bool pause) override;

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  // Called with mu_ held: whether the due read may start now (it then is no longer due).
  bool TakeDueReadLocked();

  GenerateCall(MessageFn on_message, DoneFn on_done)
      : on_message_(std::move(on_message)), on_done_(std::move(on_done)) {}

  grpc::ClientContext context_;
  r1serve::v1::GenerateResponse response_;
  MessageFn on_message_;
  DoneFn on_done_;
  std::shared_ptr<GenerateCall> self_;  // keeps the reactor alive until OnDone
  std::mutex mu_;  // ReadNext and PauseReading run on the owner's strand, reactions on gRPC's
  // A read is due and not started; a hold (AddHold) keeps gRPC from ending the call
  // meanwhile, so that ReadNext or PauseReading(false) can still start it.
  bool due_ = false;
  int unacked_ = 0;  // messages handed over and not taken yet (no ReadNext for them)
  static constexpr int kReadAhead = 4;
  bool paused_ = false;
  bool cancelled_ = false;
  int finals_left_ = 1;  // choices without their last message yet (reactor thread only)
};

// The StartCallFn of production: GenerateCall on the worker's channel.
std::shared_ptr<UpstreamCall> StartGenerateCall(Worker& worker,
                                                const r1serve::v1::GenerateRequest& request,
                                                Clock::WallTime deadline, CallMessageFn on_message,
                                                CallDoneFn on_done);

}  // namespace r1::gw
