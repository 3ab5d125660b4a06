// Polls each worker's grpc.health.v1 Check and Inference.GetLoad, concurrently and each worker on
// its own schedule: a poll starts `interval` after the worker's previous one ended, both calls
// run at once on gRPC's callback API with a `timeout` deadline, and a worker that does not
// answer (stopped, hung, gone) delays only its own next poll. One thread keeps the schedule.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "r1serve/v1/inference.pb.h"

namespace r1::gw {

class Worker;

struct PollResult {
  grpc::Status health_status;  // the Check call's
  bool serving = false;        // Check said SERVING
  grpc::Status load_status;    // the GetLoad call's
  r1serve::v1::LoadReport report;
};

class HealthChecker {
 public:
  using WorkersFn = std::function<std::vector<std::shared_ptr<Worker>>()>;
  using ResultFn = std::function<void(Worker&, const PollResult&)>;

  HealthChecker(Clock::Duration interval, Clock::Duration timeout, const Clock* clock,
                WorkersFn workers, ResultFn on_result);
  ~HealthChecker();

  void Start();
  // Waits for polls in flight (each ends by its deadline).
  void Stop();
  // Polls every worker now and returns when all answered or timed out.
  void PollAllNow();

 private:
  struct Due {
    Clock::TimePoint next{};
    bool in_flight = false;
  };
  void Loop();
  void StartPoll(const std::shared_ptr<Worker>& w);
  void PollDone(Worker* w);

  const Clock::Duration interval_;
  const Clock::Duration timeout_;
  const Clock* clock_;
  WorkersFn workers_;
  ResultFn on_result_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Worker*, Due> due_;
  int in_flight_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace r1::gw
