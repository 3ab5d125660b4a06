#include "gateway/upstream/health_checker.h"

#include <atomic>
#include <set>

#include "gateway/upstream/worker_pool.h"

namespace r1::gw {
namespace {

// One poll's two calls; each call's context and messages live until both callbacks ran.
struct Poll {
  std::shared_ptr<Worker> worker;
  grpc::ClientContext health_ctx;
  grpc::ClientContext load_ctx;
  grpc::health::v1::HealthCheckRequest health_req;
  grpc::health::v1::HealthCheckResponse health_resp;
  r1serve::v1::LoadRequest load_req;
  PollResult result;
  std::atomic<int> pending{2};
};

}  // namespace

HealthChecker::HealthChecker(Clock::Duration interval, Clock::Duration timeout, const Clock* clock,
                             WorkersFn workers, ResultFn on_result)
    : interval_(interval),
      timeout_(timeout),
      clock_(clock),
      workers_(std::move(workers)),
      on_result_(std::move(on_result)) {}

HealthChecker::~HealthChecker() { Stop(); }

void HealthChecker::Start() { thread_ = std::thread([this] { Loop(); }); }

void HealthChecker::Stop() {
  std::unique_lock<std::mutex> lock(mu_);
  stop_ = true;
  cv_.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
  lock.lock();
  cv_.wait(lock, [this] { return in_flight_ == 0; });
}

void HealthChecker::PollAllNow() {
  std::vector<std::shared_ptr<Worker>> started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : workers_()) {
      Due& d = due_[w.get()];
      if (d.in_flight) continue;
      d.in_flight = true;
      ++in_flight_;
      started.push_back(w);
    }
  }
  for (auto& w : started) StartPoll(w);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] {
    for (auto& w : started)
      if (due_[w.get()].in_flight) return false;
    return true;
  });
}

void HealthChecker::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const std::vector<std::shared_ptr<Worker>> workers = workers_();
    const Clock::TimePoint now = clock_->Now();
    Clock::TimePoint wake = now + interval_;
    std::vector<std::shared_ptr<Worker>> start;
    std::set<Worker*> present;
    for (const auto& w : workers) {
      present.insert(w.get());
      Due& d = due_[w.get()];
      if (d.in_flight) continue;
      if (d.next <= now) {
        d.in_flight = true;
        ++in_flight_;
        start.push_back(w);
      } else {
        wake = std::min(wake, d.next);
      }
    }
    // Forget workers that left the pool (none of them has a poll in flight then: a poll
    // holds its worker, so it is still in the pool's list or in `present` of a later round).
    for (auto it = due_.begin(); it != due_.end();)
      it = present.count(it->first) || it->second.in_flight ? std::next(it) : due_.erase(it);
    lock.unlock();
    for (const auto& w : start) StartPoll(w);
    lock.lock();
    if (stop_) break;
    cv_.wait_for(lock, std::max(wake - clock_->Now(), Clock::Duration(std::chrono::milliseconds(1))));
  }
}

void HealthChecker::StartPoll(const std::shared_ptr<Worker>& w) {
  auto p = std::make_shared<Poll>();
  p->worker = w;
  const Clock::WallTime deadline =
      clock_->WallNow() + std::chrono::duration_cast<Clock::WallTime::duration>(timeout_);
  p->health_ctx.set_deadline(deadline);
  p->load_ctx.set_deadline(deadline);
  auto finish = [this, p] {
    if (--p->pending > 0) return;
    on_result_(*p->worker, p->result);
    PollDone(p->worker.get());
  };
  w->health_stub()->async()->Check(&p->health_ctx, &p->health_req, &p->health_resp,
                                   [p, finish](grpc::Status s) {
                                     p->result.health_status = s;
                                     p->result.serving =
                                         s.ok() && p->health_resp.status() ==
                                                       grpc::health::v1::HealthCheckResponse::SERVING;
                                     finish();
                                   });
  w->stub()->async()->GetLoad(&p->load_ctx, &p->load_req, &p->result.report,
                              [p, finish](grpc::Status s) {
                                p->result.load_status = s;
                                finish();
                              });
}

void HealthChecker::PollDone(Worker* w) {
  std::lock_guard<std::mutex> lock(mu_);
  Due& d = due_[w];
  d.in_flight = false;
  d.next = clock_->Now() + interval_;
  --in_flight_;
  cv_.notify_all();
}

}  // namespace r1::gw
