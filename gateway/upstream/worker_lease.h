// An attempt's hold on a worker: its sequences among the worker's active ones (what
// least-connections balancing counts: a call with n choices counts n) and its circuit breaker's
// permission (the one probe while half-open; none
// in panic mode, which ignores ejections).
// Taken in one place (TryTake, from the pool's Pick) and given back exactly once, with the
// breaker's verdict, in one place: Release with the attempt's outcome, or Abandon when its
// owner dropped it. Destroying a lease that is still held abandons it.
//
// Not thread-safe: the attempt owning it uses it on its strand.
#pragma once

#include <memory>
#include <optional>

#include <grpcpp/support/status.h>

namespace r1::gw {

class Worker;

class WorkerLease {
 public:
  // Takes the breaker's permission and `sequences` active sequences; nothing when the
  // breaker refuses. With `ignore_breaker` (panic mode) only the sequences.
  static std::optional<WorkerLease> TryTake(std::shared_ptr<Worker> worker,
                                            bool ignore_breaker = false, int64_t sequences = 1);

  WorkerLease(WorkerLease&& o) noexcept;
  WorkerLease& operator=(WorkerLease&&) = delete;
  WorkerLease(const WorkerLease&) = delete;
  WorkerLease& operator=(const WorkerLease&) = delete;
  ~WorkerLease();

  Worker& worker() const { return *worker_; }
  bool held() const { return held_; }

  // The worker answered (the attempt's first message): the breaker hears success at once, so
  // a half-open probe closes it at its first token rather than at its end.
  void Answered();
  // The attempt ended with `outcome` (OK, or its failure): a worker fault counts against the
  // breaker; anything else is a success unless Answered() said so already. UNAVAILABLE also
  // marks the worker unhealthy until its next health poll. Gives the sequences back.
  void Release(grpc::StatusCode outcome);
  // The attempt gave up on an unresponsive worker (its first-token or stall timeout): no new
  // requests go there until a health poll passes again. Release follows.
  void MarkSuspect();
  // The owner dropped the attempt (the client left, another choice failed): no verdict; a
  // half-open probe permission is freed. Gives the sequences back.
  void Abandon();

 private:
  WorkerLease(std::shared_ptr<Worker> worker, bool permitted, int64_t sequences);
  void GiveBack();

  std::shared_ptr<Worker> worker_;
  bool held_ = false;
  bool answered_ = false;
  bool permitted_ = false;  // holds the breaker's permission
  int64_t sequences_ = 1;
};

}  // namespace r1::gw
