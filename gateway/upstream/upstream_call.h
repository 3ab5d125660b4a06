// One streaming Generate call as an attempt sees it: messages and a final status arrive
// through callbacks (on whatever thread the transport uses), and it can be cancelled.
// GenerateCall is the gRPC one; unit tests script their own.
#pragma once

#include <functional>
#include <memory>

#include <grpcpp/support/status.h>

#include "common/clock.h"
#include "r1serve/v1/inference.pb.h"

namespace r1::gw {

class Worker;

class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // Asks the call to end now; its done callback still follows (with CANCELLED or the status
  // it had already reached).
  virtual void Cancel() = 0;
  // Flow control. A call reads one message at a time: after handing one over it reads the
  // next only once the owner called ReadNext() (it took the message), and not while paused.
  // Messages the worker sends meanwhile wait in the transport's flow-control window, which
  // then holds the worker's writes. A message with a finish reason is always followed by the
  // read that collects the call's status.
  virtual void ReadNext() = 0;
  virtual void PauseReading(bool pause) = 0;
};

using CallMessageFn = std::function<void(r1serve::v1::GenerateResponse&&)>;
using CallDoneFn = std::function<void(const grpc::Status&)>;

// Starts Generate on `worker` with the given gRPC deadline. Messages, then exactly one done.
using StartCallFn = std::function<std::shared_ptr<UpstreamCall>(
    Worker& worker, const r1serve::v1::GenerateRequest& request, Clock::WallTime deadline,
    CallMessageFn on_message, CallDoneFn on_done)>;

}  // namespace r1::gw
