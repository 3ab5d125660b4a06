#include "gateway/upstream/worker_lease.h"

#include "gateway/upstream/retry_policy.h"
#include "gateway/upstream/worker_pool.h"

namespace r1::gw {

std::optional<WorkerLease> WorkerLease::TryTake(std::shared_ptr<Worker> worker,
                                                bool ignore_breaker, int64_t sequences) {
  if (ignore_breaker) return WorkerLease(std::move(worker), false, sequences);
  if (!worker->breaker().TryAcquire()) return std::nullopt;
  return WorkerLease(std::move(worker), true, sequences);
}

WorkerLease::WorkerLease(std::shared_ptr<Worker> worker, bool permitted, int64_t sequences)
    : worker_(std::move(worker)), held_(true), permitted_(permitted), sequences_(sequences) {
  worker_->active += sequences_;
}

WorkerLease::WorkerLease(WorkerLease&& o) noexcept
    : worker_(std::move(o.worker_)),
      held_(o.held_),
      answered_(o.answered_),
      permitted_(o.permitted_),
      sequences_(o.sequences_) {
  o.held_ = false;
}

WorkerLease::~WorkerLease() { Abandon(); }

void WorkerLease::Answered() {
  if (!held_ || answered_) return;
  answered_ = true;
  worker_->breaker().OnSuccess();
}

void WorkerLease::Release(grpc::StatusCode outcome) {
  if (!held_) return;
  if (IsWorkerFault(outcome)) {
    worker_->breaker().OnFailure();
  } else if (!answered_) {
    worker_->breaker().OnSuccess();  // the worker answered properly, e.g. a bad-input error
  }
  if (outcome == grpc::StatusCode::UNAVAILABLE) worker_->healthy = false;
  GiveBack();
}

void WorkerLease::MarkSuspect() {
  if (held_) worker_->healthy = false;
}

void WorkerLease::Abandon() {
  if (!held_) return;
  if (!answered_ && permitted_) worker_->breaker().OnAbandoned();
  GiveBack();
}

void WorkerLease::GiveBack() {
  held_ = false;
  worker_->active -= sequences_;
}

}  // namespace r1::gw
