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
};

using CallMessageFn = std::function<void(r1serve::v1::GenerateResponse&&)>;
using CallDoneFn = std::function<void(const grpc::Status&)>;

// Starts Generate on `worker` with the given gRPC deadline. Messages, then exactly one done.
using StartCallFn = std::function<std::shared_ptr<UpstreamCall>(
    Worker& worker, const r1serve::v1::GenerateRequest& request, Clock::WallTime deadline,
    CallMessageFn on_message, CallDoneFn on_done)>;

}  // namespace r1::gw
