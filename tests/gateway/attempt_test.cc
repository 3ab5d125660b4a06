// The attempt on a fake clock, a hand-driven strand and scripted calls: its lease is given
// back exactly once however it ends, its outcome reaches the breaker and its owner once, the
// first-token and stall timeouts abandon a silent worker (and mark it suspect), and the health
// checker's verdict on the worker ends the attempt at once.
#include <gtest/gtest.h>

#include "gateway/upstream/attempt.h"
#include "gateway/upstream/worker_pool.h"
#include "tests/gateway/fakes.h"

namespace r1::gw {
namespace {

using namespace std::chrono_literals;
using testing::FakeCalls;
using testing::ManualStrand;
using testing::Piece;

class AttemptTest : public ::testing::Test {
 protected:
  AttemptTest() {
    BreakerOptions b;
    b.failure_threshold = 1;  // one failure opens it: "counted against" is visible
    b.cooldown = 5s;
    worker_ = std::make_shared<Worker>("127.0.0.1:1", b, &clock_);
    worker_->healthy = true;
    env_.clock = &clock_;
    env_.start_call = calls_.Starter();
    env_.first_token_timeout = 30s;
    env_.stall_timeout = 20s;
    env_.call_timeout = 600s;
  }

  // Starts an attempt whose events are recorded.
  std::shared_ptr<Attempt> Start() {
    auto lease = WorkerLease::TryTake(worker_);
    EXPECT_TRUE(lease.has_value());
    r1serve::v1::GenerateRequest r;
    r.set_request_id("req-1");
    return Attempt::Start(
        env_, strand_, std::move(*lease), r,
        [this](r1serve::v1::GenerateResponse&& m) { texts_.push_back(m.text()); },
        [this](const grpc::Status& s) { ends_.push_back(s); });
  }
  testing::FakeCall& call(size_t i = 0) { return *calls_.calls.at(i); }

  FakeClock clock_;
  std::shared_ptr<ManualStrand> strand_ = std::make_shared<ManualStrand>(&clock_);
  FakeCalls calls_;
  AttemptEnv env_;
  std::shared_ptr<Worker> worker_;
  std::vector<std::string> texts_;
  std::vector<grpc::Status> ends_;
};

TEST_F(AttemptTest, SuccessReleasesTheLeaseOnceWhenTheCallEnds) {
  auto a = Start();
  EXPECT_EQ(worker_->active, 1);
  ASSERT_EQ(calls_.calls.size(), 1u);
  EXPECT_EQ(call().worker, worker_.get());
  EXPECT_EQ(call().request.request_id(), "req-1");
  EXPECT_EQ(call().deadline, clock_.WallNow() + 600s);

  call().Send(Piece("a"));
  call().Send(Piece("b", r1serve::v1::FINISH_REASON_STOP, 2));
  EXPECT_TRUE(texts_.empty());  // callbacks wait for the strand
  strand_->RunPending();
  EXPECT_EQ(texts_, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(worker_->active, 1);  // the call has not ended yet
  call().Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_TRUE(ends_[0].ok());
  EXPECT_EQ(worker_->active, 0);
  EXPECT_EQ(strand_->armed_timers(), 0u);  // the first-token timer stopped at the first token
  a->Cancel();                             // too late: nothing changes
  EXPECT_EQ(worker_->active, 0);
  EXPECT_FALSE(call().cancelled);
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kClosed);
}

TEST_F(AttemptTest, FailureIsReportedOnceAndCountsAgainstTheWorker) {
  auto a = Start();
  call().Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"));
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_EQ(ends_[0].error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ends_[0].error_message(), "connection refused");
  EXPECT_EQ(worker_->active, 0);
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kOpen);
  EXPECT_FALSE(worker_->healthy);  // until its next health poll
  strand_->Advance(60s);           // no timer left to fire
  EXPECT_EQ(ends_.size(), 1u);
}

TEST_F(AttemptTest, OutcomeFollowsTheFinishReason) {
  // An OK status after a FINISH_REASON_ERROR message is the worker failing mid-stream.
  auto a = Start();
  call().Send(Piece("x"));
  call().Send([] {
    auto m = Piece("", r1serve::v1::FINISH_REASON_ERROR);
    m.set_error_message("out of memory");
    return m;
  }());
  call().Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_EQ(ends_[0].error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(ends_[0].error_message(), "out of memory");
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kOpen);

  // An OK status without any finish reason is a broken stream.
  worker_->breaker().OnSuccess();
  clock_.Advance(10s);  // past the cool-down: half-open; the next request is the probe
  auto b = Start();
  call(1).Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 2u);
  EXPECT_EQ(ends_[1].error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(worker_->active, 0);
}

TEST_F(AttemptTest, NonFaultFailureIsTheWorkersProperAnswer) {
  // A half-open breaker lets one probe through; INVALID_ARGUMENT is a proper answer and
  // closes it.
  worker_->breaker().OnFailure();  // ejected for the 5 s cool-down
  clock_.Advance(6s);
  ASSERT_EQ(worker_->breaker().State(), BreakerState::kHalfOpen);
  auto a = Start();
  EXPECT_FALSE(WorkerLease::TryTake(worker_).has_value());  // the probe is taken
  call().Done(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad stop string"));
  strand_->RunPending();
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kClosed);
  EXPECT_TRUE(worker_->healthy);
  EXPECT_EQ(worker_->active, 0);
}

TEST_F(AttemptTest, FirstTokenClosesAHalfOpenBreaker) {
  worker_->breaker().OnFailure();  // ejected for the 5 s cool-down
  clock_.Advance(6s);
  auto a = Start();
  call().Send(Piece("a"));
  strand_->RunPending();
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kClosed);  // at the first token
  EXPECT_EQ(worker_->active, 1);
  call().Send(Piece("b", r1serve::v1::FINISH_REASON_LENGTH, 2));
  call().Done(grpc::Status::OK);
  strand_->RunPending();
  EXPECT_EQ(worker_->active, 0);
}

TEST_F(AttemptTest, CancelAbandonsWithoutAVerdict) {
  worker_->breaker().OnFailure();  // ejected for the 5 s cool-down
  clock_.Advance(6s);
  auto a = Start();
  ASSERT_FALSE(worker_->breaker().CanAcquire());  // the probe is ours
  a->Cancel();
  EXPECT_TRUE(call().cancelled);
  EXPECT_EQ(worker_->active, 0);
  // No verdict: still half-open, and the probe is free for the next request.
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kHalfOpen);
  EXPECT_TRUE(worker_->breaker().CanAcquire());
  EXPECT_EQ(strand_->armed_timers(), 0u);
  // gRPC still ends the call; the owner hears nothing, and the lease is not given back twice.
  call().Send(Piece("late"));
  call().Done(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  strand_->RunPending();
  a->Cancel();
  EXPECT_TRUE(texts_.empty());
  EXPECT_TRUE(ends_.empty());
  EXPECT_EQ(worker_->active, 0);
}

TEST_F(AttemptTest, FirstTokenTimeoutAbandonsASilentWorker) {
  auto a = Start();
  strand_->Advance(30s - 1ms);
  EXPECT_TRUE(ends_.empty());
  EXPECT_FALSE(call().cancelled);
  strand_->Advance(1ms);
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_EQ(ends_[0].error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ends_[0].error_message(),
            "worker 127.0.0.1:1 sent no token within 30 s (--first-token-timeout)");
  EXPECT_TRUE(call().cancelled);
  EXPECT_EQ(worker_->active, 0);
  EXPECT_EQ(worker_->breaker().State(), BreakerState::kOpen);  // counted against it
  EXPECT_FALSE(worker_->healthy);  // suspect until its next health poll passes
  EXPECT_EQ(a->end_cause(), AttemptEnd::kFirstTokenTimeout);
  // The cancelled call's own end changes nothing.
  call().Send(Piece("late"));
  call().Done(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  strand_->RunPending();
  EXPECT_EQ(ends_.size(), 1u);
  EXPECT_TRUE(texts_.empty());
  EXPECT_EQ(worker_->active, 0);
}

TEST_F(AttemptTest, FirstTokenStopsTheTimeout) {
  env_.stall_timeout = Clock::Duration::zero();
  auto a = Start();
  strand_->Advance(29s);
  call().Send(Piece("a"));
  strand_->Advance(10min);  // a long generation is not the first-token timeout's business
  EXPECT_TRUE(ends_.empty());
  EXPECT_FALSE(call().cancelled);
  EXPECT_EQ(worker_->active, 1);
  call().Send(Piece("b", r1serve::v1::FINISH_REASON_STOP, 2));
  call().Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_TRUE(ends_[0].ok());
}

TEST_F(AttemptTest, StallTimeoutCountsFromTheLastMessage) {
  auto a = Start();
  strand_->Advance(25s);
  call().Send(Piece("a"));  // the first token: from now on at most 20 s between messages
  for (int i = 0; i < 10; ++i) {
    strand_->Advance(15s);
    call().Send(Piece("b"));
  }
  strand_->Advance(19s);
  EXPECT_TRUE(ends_.empty());
  EXPECT_EQ(texts_.size(), 11u);
  // Messages do not touch the timer: one armed, re-armed only when it fired early.
  EXPECT_EQ(strand_->armed_timers(), 1u);
  strand_->Advance(1s);
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_EQ(ends_[0].error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ends_[0].error_message(),
            "worker 127.0.0.1:1 sent nothing for 20 s mid-stream (--stall-timeout)");
  EXPECT_EQ(a->end_cause(), AttemptEnd::kStallTimeout);
  EXPECT_TRUE(call().cancelled);
  EXPECT_FALSE(worker_->healthy);
  EXPECT_EQ(worker_->active, 0);
  EXPECT_EQ(strand_->armed_timers(), 0u);
}

TEST_F(AttemptTest, TheLastMessageStopsTheStallTimeout) {
  auto a = Start();
  call().Send(Piece("a", r1serve::v1::FINISH_REASON_STOP, 1));
  strand_->Advance(1h);  // the call's status is late: no stall
  EXPECT_TRUE(ends_.empty());
  call().Done(grpc::Status::OK);
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 1u);
  EXPECT_TRUE(ends_[0].ok());
}

TEST_F(AttemptTest, ASuspectWorkerEndsItsAttemptsAtOnce) {
  auto a = Start();
  auto b = Start();
  call(0).Send(Piece("a"));
  strand_->RunPending();
  worker_->MarkSuspect();  // as the health checker does, from its own thread
  EXPECT_TRUE(ends_.empty());  // the news hops onto the strand first
  strand_->RunPending();
  ASSERT_EQ(ends_.size(), 2u);
  for (const auto& e : ends_) {
    EXPECT_EQ(e.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(e.error_message(), "worker 127.0.0.1:1 failed its health checks");
  }
  EXPECT_EQ(a->end_cause(), AttemptEnd::kWorkerSuspect);
  EXPECT_TRUE(call(0).cancelled);
  EXPECT_TRUE(call(1).cancelled);
  EXPECT_EQ(worker_->active, 0);
  // Ended attempts stop listening.
  worker_->MarkSuspect();
  strand_->RunPending();
  EXPECT_EQ(ends_.size(), 2u);
}

TEST_F(AttemptTest, ZeroTimeoutMeansNone) {
  env_.first_token_timeout = Clock::Duration::zero();
  env_.stall_timeout = Clock::Duration::zero();
  auto a = Start();
  EXPECT_EQ(strand_->armed_timers(), 0u);
  strand_->Advance(1h);
  EXPECT_TRUE(ends_.empty());
  a->Cancel();
  EXPECT_EQ(worker_->active, 0);
}

TEST_F(AttemptTest, EachAttemptHasItsOwnDeadline) {
  auto a = Start();
  strand_->Advance(45s);  // first-token timeout at 30 s
  ASSERT_EQ(ends_.size(), 1u);
  worker_->breaker().OnSuccess();
  clock_.Advance(10s);
  auto b = Start();
  ASSERT_EQ(calls_.calls.size(), 2u);
  EXPECT_EQ(call(1).deadline - call(0).deadline, 55s);
  EXPECT_EQ(call(1).deadline, clock_.WallNow() + 600s);
  b->Cancel();
}

TEST_F(AttemptTest, AnAttemptDroppedWithoutEndingGivesItsLeaseBack) {
  // The strand stopped (shutdown): posted events never run and every reference goes away.
  auto a = Start();
  EXPECT_EQ(worker_->active, 1);
  call().Done(grpc::Status::OK);  // posted, never run
  a.reset();
  calls_.calls.clear();
  strand_->DropPending();  // the last reference to the attempt
  EXPECT_EQ(worker_->active, 0);
  EXPECT_TRUE(ends_.empty());
}

}  // namespace
}  // namespace r1::gw
