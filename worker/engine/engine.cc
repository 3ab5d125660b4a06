// The engine thread. Each step: plan (scheduler) -> run (step executor: batch, model, sampler)
// -> process outputs (stops, detokenizing, finishing) -> deliver (the outbox to the sinks).
// Torch stays in the runner and executor; gRPC never comes here (engine.h is the boundary).
#include "worker/engine/engine.h"

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/log.h"
#include "worker/engine/block_allocator.h"
#include "worker/engine/engine_internal.h"
#include "worker/engine/output_processor.h"
#include "worker/engine/request_state.h"
#include "worker/engine/scheduler.h"
#include "worker/engine/step_executor.h"

namespace r1::engine {
namespace {

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, std::unique_ptr<ModelRunner> runner,
             int32_t max_model_len)
      : options_(options),
        runner_(std::move(runner)),
        allocator_(static_cast<int32_t>(runner_->num_blocks()),
                   static_cast<int32_t>(runner_->block_size()), options.enable_prefix_caching),
        scheduler_(SchedulerConfig{options.max_running, options.prefill_chunk,
                                   runner_->block_size(), options.max_wait_steps,
                                   options.admit_headroom_tokens},
                   &allocator_),
        executor_(runner_.get(), options.clock),
        outputs_(OutputConfig{runner_->config().eos_token_ids, max_model_len, options.codec}),
        max_model_len_(max_model_len),
        own_random_(options.random ? nullptr : std::make_unique<SystemRandom>()),
        random_(options.random ? options.random : own_random_.get()) {}

  ~EngineImpl() override { Shutdown(); }

  absl::Status WarmUp() {
    // One step over a one-token sequence, so the first request does not pay for lazy set-up.
    model::StepBatch batch;
    batch.tokens = {0};
    batch.seqs.push_back({0, 1, {0}, true});
    R1_RETURN_IF_ERROR(runner_->Forward(batch).status());
    // Then what the device path prepares ahead (on CUDA: the largest prompt step and decode
    // graphs up to --max-running sequences and 1,024 keys; longer contexts capture when met).
    // Not fatal: a GPU with little memory left after the KV cache may fail to capture the
    // largest graphs; those steps then capture when first met, or run eagerly.
    Clock::TimePoint t0 = options_.clock->Now();
    absl::Status warm = runner_->WarmUp(options_.max_running, options_.prefill_chunk,
                                        std::min<int64_t>(1024, max_model_len_));
    if (!warm.ok()) {
      R1_LOG(WARNING) << "warm-up stopped early (" << warm.message()
                      << "); steps it did not reach capture their graphs when first met, or run eagerly";
    }
    R1_LOG(INFO) << "warm-up took " << MillisBetween(t0, options_.clock->Now()) << " ms";
    return absl::OkStatus();
  }

  void Start() { thread_ = std::thread([this] { Loop(); }); }

  absl::Status SubmitAll(std::vector<EngineRequest> requests) override {
    if (!accepting_.load()) return absl::UnavailableError("worker is draining");
    const int32_t n = static_cast<int32_t>(requests.size());
    int32_t q = queued_.load();
    do {
      if (q + n > options_.max_waiting) {
        return absl::ResourceExhaustedError(
            "queue full: " + std::to_string(q) + " requests are waiting (--max-waiting)" +
            (n > 1 ? ", " + std::to_string(n) + " more asked for" : ""));
      }
    } while (!queued_.compare_exchange_weak(q, q + n));
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (EngineRequest& request : requests) {
        R1_LOG(DEBUG) << "queued " << request.request_id << " (" << ++q << " waiting)";
        inbox_.push_back(std::move(request));
      }
    }
    cv_.notify_one();
    return absl::OkStatus();
  }

  EngineLoad Load() const override {
    EngineLoad l;
    l.running = running_.load();
    l.waiting = queued_.load() + requeued_.load();
    l.blocks_used = blocks_used_.load();
    l.blocks_total = runner_->num_blocks();
    l.preemptions = preemptions_.load();
    l.kv_cache_bytes = runner_->kv_cache_bytes();
    l.block_size = static_cast<int32_t>(runner_->block_size());
    l.prefix_caching = allocator_.prefix_caching();  // fixed at start: safe to read
    l.prefix_cache_queries = prefix_queries_.load();
    l.prefix_cache_hits = prefix_hits_.load();
    l.steps = steps_.load();
    model::DeviceMemory m = runner_->Memory();
    l.device_memory_available = m.available;
    l.device_memory_used = m.used_bytes();
    l.device_memory_total = m.total_bytes;
    l.allocator_allocated = m.allocated_bytes;
    l.allocator_reserved = m.reserved_bytes;
    return l;
  }

  void StopAccepting() override { accepting_ = false; }

  void Shutdown() override {
    accepting_ = false;
    stopping_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  int32_t max_model_len() const override { return max_model_len_; }
  int32_t vocab_size() const override { return static_cast<int32_t>(runner_->config().vocab_size); }
  std::string device_name() const override { return runner_->device_name(); }
  int32_t max_running() const override { return options_.max_running; }
  int32_t max_waiting() const override { return options_.max_waiting; }

 private:
  void Loop() {
    while (TakeInbox()) {
      DropCancelled();
      if (!scheduler_.empty()) {
        HangWhileFaultFileExists();
        Step();
        ++steps_;
      }
      Publish();
    }
    EndAll();
  }

  // Testing (--fault-hang-engine-file): the engine thread stops, as a hung one would, while
  // the file exists; shutting down still ends it.
  void HangWhileFaultFileExists() {
    if (options_.fault_hang_file.empty()) return;
    while (!stopping_.load() && std::filesystem::exists(options_.fault_hang_file))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // One engine step.
  void Step() {
    Clock::TimePoint t0 = options_.clock->Now();
    StepPlan plan = scheduler_.Schedule();                   // plan
    if (!Admit(plan)) return;
    executor_.Launch(plan);                                  // run: the model call is queued
    if (runner_->traits().computes_async) Deliver();         // the last step's tokens go out meanwhile
    StepOutput out = executor_.Finish();                     // sampled tokens, or the step's error
    Process(plan, out);                                      // stops, text, finishing -> outbox
    if (!runner_->traits().computes_async) Deliver();        // a synchronous step delivers its own
    LogStep(plan, out, t0);
  }

  // Counts what the plan changed (preemptions, requests leaving the queue). False when the
  // plan runs nothing.
  bool Admit(const StepPlan& plan) {
    preemptions_ += static_cast<int64_t>(plan.preempted.size());
    for (Sequence* s : plan.preempted) {
      auto* req = static_cast<RequestState*>(s);
      R1_LOG(DEBUG) << "preempted " << req->req.request_id << " at " << req->num_tokens()
                    << " tokens (" << req->num_preemptions << " times)";
    }
    Clock::TimePoint now = options_.clock->Now();
    for (const ScheduledChunk& c : plan.chunks) {
      auto* req = static_cast<RequestState*>(c.seq);
      if (req->scheduled_at == Clock::TimePoint{}) req->scheduled_at = now;
      LeaveQueue(req);
    }
    return !plan.chunks.empty();
  }

  void Process(const StepPlan& plan, const StepOutput& out) {
    if (!out.status.ok()) {
      R1_LOG(ERROR) << "step failed, ending " << plan.chunks.size()
                    << " requests: " << out.status.message();
      for (const ScheduledChunk& c : plan.chunks)
        End(static_cast<RequestState*>(c.seq), FinishReason::kError, std::string(out.status.message()));
      return;
    }
    scheduler_.Commit(plan);
    Clock::TimePoint now = options_.clock->Now();
    for (size_t i = 0; i < out.sampled.size(); ++i) {
      RequestState* req = out.sampled[i];
      Delta d = outputs_.OnToken(req, out.samples[i], now);
      const bool finished = d.finish != FinishReason::kNone;
      outbox_.emplace_back(req->req.sink, std::move(d));
      if (finished) Forget(req);
    }
  }

  // Delivers the queued deltas, each request's in order. A step queues them in Process; when
  // they go is the runner's to say (Step), or now when there is nothing left to compute.
  void Deliver() {
    for (auto& [sink, d] : outbox_) sink->OnDelta(std::move(d));
    outbox_.clear();
  }

  // Moves the inbox into the scheduler; delivers and waits while there is nothing to do.
  bool TakeInbox() {
    std::vector<EngineRequest> in;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (scheduler_.empty() && inbox_.empty() && !stop_) {
        lock.unlock();
        Deliver();  // idle: nothing computes, the last tokens go out now
        lock.lock();
      }
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !scheduler_.empty(); });
      if (stop_) return false;
      in.swap(inbox_);
    }
    for (EngineRequest& r : in) {
      r.sampling.logprobs |= r.sampling.top_logprobs > 0;
      const uint64_t seed = r.sampling.seed ? *r.sampling.seed : random_->Next();
      auto req = std::make_unique<RequestState>(std::move(r), seed,
                                                options_.codec ? options_.codec->NewStreamWith(r.skip_special_tokens) : nullptr);
      req->id = next_id_++;
      req->constraints = TokenConstraints(req->req, options_.reasoning,
                                          runner_->config().eos_token_ids, vocab_size());
      outputs_.Resume(req.get());  // after the constraints: they take in the resumed tokens
      scheduler_.Add(req.get());
      live_.emplace(req->id, std::move(req));
    }
    return true;
  }

  void DropCancelled() {
    std::vector<RequestState*> gone;
    for (auto& [id, req] : live_)
      if (req->req.sink->Cancelled()) gone.push_back(req.get());
    for (RequestState* req : gone) End(req, FinishReason::kCancelled, "");
  }

  // Ends a request for a reason other than its own output: its last delta (after any it
  // already queued) and its blocks back.
  void End(RequestState* req, FinishReason why, std::string error) {
    LeaveQueue(req);
    outbox_.emplace_back(req->req.sink, outputs_.Ending(*req, why, std::move(error), options_.clock->Now()));
    Forget(req);
  }

  void Forget(RequestState* req) {
    scheduler_.Remove(req);
    live_.erase(req->id);
  }

  // The admission counter drops once per request: when first scheduled or when it ends unscheduled.
  void LeaveQueue(RequestState* req) {
    if (req->left_queue) return;
    req->left_queue = true;
    queued_--;
  }

  // Shutting down: every request still here ends.
  void EndAll() {
    Deliver();
    std::vector<RequestState*> all;
    for (auto& [id, req] : live_) all.push_back(req.get());
    for (RequestState* req : all) End(req, FinishReason::kCancelled, "worker shut down");
    Deliver();
    std::lock_guard<std::mutex> lock(mu_);
    for (EngineRequest& r : inbox_) {
      Delta d;
      d.finish = FinishReason::kCancelled;
      d.error = "worker shut down";
      d.prompt_tokens = static_cast<int32_t>(r.prompt.size());
      r.sink->OnDelta(std::move(d));
    }
    inbox_.clear();
  }

  void Publish() {
    running_ = scheduler_.num_running();
    int32_t requeued = 0;
    for (const Sequence* s : scheduler_.waiting()) requeued += s->started ? 1 : 0;
    requeued_ = requeued;
    blocks_used_ = allocator_.num_used();
    prefix_queries_ = scheduler_.prefix_cache_queries();
    prefix_hits_ = scheduler_.prefix_cache_hits();
  }

  void LogStep(const StepPlan& plan, const StepOutput& out, Clock::TimePoint t0) {
    R1_LOG(DEBUG) << "step: " << plan.chunks.size() << " sequences, " << plan.num_tokens
                  << " tokens; constraints " << out.constraint_ms << " ms, model call "
                  << out.model_ms << " ms, sampling " << out.sample_ms
                  << " ms, whole step " << MillisBetween(t0, options_.clock->Now()) << " ms";
  }

  EngineOptions options_;
  std::unique_ptr<ModelRunner> runner_;
  BlockAllocator allocator_;
  Scheduler scheduler_;
  StepExecutor executor_;
  OutputProcessor outputs_;
  int32_t max_model_len_;
  std::unique_ptr<Random> own_random_;
  Random* random_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<RequestState>> live_;
  std::vector<std::pair<std::shared_ptr<RequestSink>, Delta>> outbox_;  // see Deliver()

  // The handoff.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<EngineRequest> inbox_;
  bool stop_ = false;
  std::thread thread_;

  std::atomic<bool> accepting_{true};
  std::atomic<int32_t> queued_{0};  // submitted, not yet scheduled once
  std::atomic<int32_t> requeued_{0};
  std::atomic<int32_t> running_{0};
  std::atomic<int64_t> blocks_used_{0};
  std::atomic<int64_t> preemptions_{0};
  std::atomic<int64_t> prefix_queries_{0};
  std::atomic<int64_t> prefix_hits_{0};
  std::atomic<int64_t> steps_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> StartEngine(const EngineOptions& options,
                                                    std::unique_ptr<ModelRunner> runner,
                                                    int32_t max_model_len) {
  auto engine = std::make_unique<EngineImpl>(options, std::move(runner), max_model_len);
  R1_RETURN_IF_ERROR(engine->WarmUp());
  engine->Start();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace r1::engine
