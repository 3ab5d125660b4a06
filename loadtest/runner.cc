#include "loadtest/runner.h"

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/random.h"
#include "loadtest/grpc_backend.h"
#include "loadtest/http_backend.h"
#include "loadtest/prompt.h"

namespace r1::loadtest {
namespace asio = boost::asio;

namespace {

// One level (or its warm-up): launches requests, collects results, tells when all are in.
class LevelRun {
 public:
  LevelRun(asio::io_context& io, Backend& backend, const Options& options, Random& rng,
           Level level, int64_t count, double duration_s, uint64_t first_index)
      : io_(io), backend_(backend), options_(options), rng_(rng), level_(level),
        count_(count), duration_s_(duration_s), next_index_(first_index), timer_(io) {}

  LevelResult Run(bool warmup, const ProgressFn& progress) {
    start_ = SteadyClock::now();
    deadline_ = start_ + std::chrono::duration_cast<SteadyClock::duration>(
                             std::chrono::duration<double>(duration_s_));
    if (level_.rate > 0) {
      next_arrival_ = start_;
      asio::post(io_, [this] { Arrive(); });
    } else {
      std::vector<RequestSpec> specs;
      {
        std::lock_guard<std::mutex> lock(mu_);
        closed_issue_done_ = false;
        specs = TakeLaunchesLocked();
      }
      Launch(specs);
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (!FinishedLocked()) {
      cv_.wait_for(lock, std::chrono::milliseconds(500));
      if (progress) {
        Progress p = SnapshotLocked(warmup);
        lock.unlock();
        progress(p);
        lock.lock();
      }
    }
    LevelResult out;
    out.level = level_;
    out.results = std::move(results_);
    out.client_queued = client_queued_;
    out.wall_s = std::chrono::duration<double>(last_done_ - start_).count();
    if (out.results.empty()) out.wall_s = 0;
    out.window_start = start_;
    out.window_end = duration_s_ > 0 ? std::min(deadline_, last_done_) : last_done_;
    return out;
  }

 private:
  bool TimeLeft() const { return duration_s_ <= 0 || SteadyClock::now() < deadline_; }

  // Closed loop: more requests may start while slots are free and count/time allow.
  std::vector<RequestSpec> TakeLaunchesLocked() {
    std::vector<RequestSpec> specs;
    if (level_.rate > 0) {
      while (pending_ > 0 && in_flight_ < level_.concurrency) {
        --pending_;
        specs.push_back(NextSpecLocked());
      }
      return specs;
    }
    while (in_flight_ < level_.concurrency) {
      bool more = duration_s_ > 0 ? TimeLeft() : issued_ < count_;
      if (!more) {
        closed_issue_done_ = true;
        break;
      }
      ++issued_;
      specs.push_back(NextSpecLocked());
    }
    return specs;
  }

  RequestSpec NextSpecLocked() {
    RequestSpec s;
    s.index = next_index_++;
    s.prompt_words = options_.prompt_len.Sample(rng_);
    s.max_tokens = options_.output_len.Sample(rng_);
    s.prompt = MakePrompt(s.prompt_words, rng_);
    ++in_flight_;
    return s;
  }

  void Launch(const std::vector<RequestSpec>& specs) {
    for (const RequestSpec& s : specs) {
      backend_.Start(s, [this, words = s.prompt_words](RequestResult r) {
        r.prompt_words = words;
        OnDone(std::move(r));
      });
    }
  }

  void OnDone(RequestResult r) {
    std::vector<RequestSpec> specs;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
      ++done_;
      if (!r.ok) ++failed_;
      output_tokens_ += r.ok ? r.output_tokens : 0;
      last_done_ = SteadyClock::now();
      results_.push_back(std::move(r));
      specs = TakeLaunchesLocked();
      if (FinishedLocked()) cv_.notify_all();
    }
    Launch(specs);
  }

  // Open loop: one Poisson arrival; schedules the next.
  void Arrive() {
    std::vector<RequestSpec> specs;
    bool more;
    {
      std::lock_guard<std::mutex> lock(mu_);
      more = duration_s_ > 0 ? TimeLeft() : issued_ < count_;
      if (more) {
        ++issued_;
        ++pending_;
        if (in_flight_ >= level_.concurrency) ++client_queued_;
        specs = TakeLaunchesLocked();
        more = duration_s_ > 0 ? true : issued_ < count_;
      }
      if (!more) {
        arrivals_done_ = true;
        if (FinishedLocked()) cv_.notify_all();
      }
    }
    Launch(specs);
    if (!more) return;
    double u = rng_.Uniform01();
    double gap = -std::log(1.0 - u) / level_.rate;
    next_arrival_ += std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double>(gap));
    if (duration_s_ > 0 && next_arrival_ >= deadline_) {
      next_arrival_ = deadline_;
    }
    timer_.expires_at(next_arrival_);
    timer_.async_wait([this](const boost::system::error_code&) { Arrive(); });
  }

  bool FinishedLocked() const {
    bool issuing_over = level_.rate > 0 ? arrivals_done_ : closed_issue_done_;
    return issuing_over && pending_ == 0 && in_flight_ == 0;
  }

  Progress SnapshotLocked(bool warmup) const {
    Progress p;
    p.level = level_;
    p.warmup = warmup;
    p.done = done_;
    p.in_flight = in_flight_;
    p.failed = failed_;
    p.target = duration_s_ > 0 ? 0 : count_;
    p.output_tokens = output_tokens_;
    p.elapsed_s = std::chrono::duration<double>(SteadyClock::now() - start_).count();
    p.duration_s = duration_s_;
    return p;
  }

  asio::io_context& io_;
  Backend& backend_;
  const Options& options_;
  Random& rng_;  // used under mu_ (and by Arrive, which runs one at a time)
  const Level level_;
  const int64_t count_;
  const double duration_s_;
  uint64_t next_index_;
  asio::steady_timer timer_;

  std::mutex mu_;
  std::condition_variable cv_;
  SteadyClock::time_point start_, deadline_, next_arrival_, last_done_;
  int64_t issued_ = 0, pending_ = 0, in_flight_ = 0, done_ = 0, failed_ = 0;
  int64_t output_tokens_ = 0, client_queued_ = 0;
  bool arrivals_done_ = false, closed_issue_done_ = true;
  std::vector<RequestResult> results_;
};

}  // namespace

absl::StatusOr<std::vector<LevelResult>> RunLoadTest(const Options& options,
                                                     const std::vector<Level>& levels,
                                                     const ProgressFn& progress) {
  R1_ASSIGN_OR_RETURN(Target target, ParseTarget(options.target));
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::unique_ptr<Backend> backend;
  if (target.scheme == "http") {
    R1_ASSIGN_OR_RETURN(backend, MakeHttpBackend(io, target, options));
  } else {
    backend = MakeGrpcBackend(target, options);
  }
  std::vector<std::thread> threads;
  for (int64_t i = 0; i < std::max<int64_t>(1, options.threads); ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  // Lengths and prompt words come from one seeded generator, so a run is repeatable.
  SystemRandom rng(options.seed);
  std::vector<LevelResult> out;
  uint64_t index = 0;
  for (const Level& level : levels) {
    if (options.warmup > 0) {
      Level warm{level.concurrency, 0};
      LevelRun run(io, *backend, options, rng, warm, options.warmup, 0, index);
      run.Run(true, progress);
      index += static_cast<uint64_t>(options.warmup);
    }
    LevelRun run(io, *backend, options, rng, level, options.requests, options.duration_s, index);
    out.push_back(run.Run(false, progress));
    index += out.back().results.size();
  }
  work.reset();
  io.stop();
  for (std::thread& t : threads) t.join();
  return out;
}

}  // namespace r1::loadtest
