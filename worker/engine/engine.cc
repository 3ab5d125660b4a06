// The engine thread: scheduler -> batch -> model -> sampler -> stop checks -> detokenizer ->
// the request's sink. Torch lives here; gRPC never does (engine.h is the boundary).
#include "worker/engine/engine.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "worker/engine/block_allocator.h"
#include "worker/engine/device_sampler.h"
#include "worker/engine/sampler.h"
#include "worker/engine/scheduler.h"
#include "worker/engine/stop_checker.h"
#include "worker/model/device_memory.h"
#include "worker/model/qwen2.h"

namespace r1::engine {
namespace {

struct Request : Sequence {
  explicit Request(EngineRequest r, uint64_t seed)
      : req(std::move(r)), state(seed), stop(req.stop) {}
  EngineRequest req;
  SamplingOptions options;
  SamplerState state;
  StopChecker stop;
  std::unique_ptr<TextStream> text;
  Clock::TimePoint scheduled_at{}, first_token_at{}, last_token_at{};
};


class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, std::unique_ptr<model::Qwen2Model> model,
             int64_t num_blocks, int32_t max_model_len)
      : options_(options),
        model_(std::move(model)),
        cache_(model_->config(), num_blocks, options.block_size, model_->dtype(), model_->device()),
        allocator_(static_cast<int32_t>(num_blocks)),
        scheduler_(SchedulerConfig{options.max_running, options.prefill_chunk, options.block_size},
                   &allocator_),
        max_model_len_(max_model_len),
        rng_(std::random_device{}()),
        // On CUDA only ids cross to the host. On CPU the C++ sampler is as fast or faster
        // (bench/sampler_bench).
        sample_on_device_(model_->device().is_cuda()) {
    blocks_total_ = num_blocks;
    kv_cache_bytes_ =
        num_blocks * model::KvCache::BytesPerBlock(model_->config(), options.block_size,
                                                   model_->dtype());
  }

  ~EngineImpl() override { Shutdown(); }

  absl::Status WarmUp() {
    // One step over a one-token sequence, so the first request does not pay for lazy set-up.
    model::StepBatch batch;
    batch.tokens = {0};
    model::SequenceStep s;
    s.num_cached = 0;
    s.num_new = 1;
    s.block_table = {0};
    batch.seqs.push_back(s);
    R1_RETURN_IF_ERROR(RunModel(batch).status());
    // On CUDA: the largest step the scheduler plans, and the decode graphs of every batch size
    // up to --max-running for contexts up to 1,024 keys (longer ones are captured when met).
    // Not fatal: a GPU with little memory left after the KV cache may fail to capture the
    // largest graphs; those steps then capture when first met, or run eagerly.
    auto t0 = std::chrono::steady_clock::now();
    absl::Status warm;
    try {
      warm = model_->WarmUp(cache_, options_.max_running, options_.prefill_chunk,
                            std::min<int64_t>(1024, max_model_len_));
    } catch (const c10::Error& e) {
      warm = absl::InternalError(e.what_without_backtrace());
    }
    if (!warm.ok()) {
      R1_LOG(WARNING) << "warm-up stopped early (" << warm.message()
                      << "); steps it did not reach capture their graphs when first met, or run eagerly";
    }
    if (model_->device().is_cuda()) {
      R1_LOG(INFO) << "warm-up (allocator and decode graphs up to batch " << options_.max_running
                   << ") took " << MillisBetween(t0, std::chrono::steady_clock::now()) << " ms";
    }
    return absl::OkStatus();
  }

  void Start() { thread_ = std::thread([this] { Loop(); }); }

  absl::Status Submit(EngineRequest request) override {
    if (!accepting_.load()) return absl::UnavailableError("worker is draining");
    int32_t q = queued_.load();
    do {
      if (q >= options_.max_waiting) {
        return absl::ResourceExhaustedError("queue full: " + std::to_string(q) +
                                            " requests are waiting (--max-waiting)");
      }
    } while (!queued_.compare_exchange_weak(q, q + 1));
    R1_LOG(DEBUG) << "queued " << request.request_id << " (" << q + 1 << " waiting)";
    {
      std::lock_guard<std::mutex> lock(mu_);
      inbox_.push_back(std::move(request));
    }
    cv_.notify_one();
    return absl::OkStatus();
  }

  EngineLoad Load() const override {
    EngineLoad l;
    l.running = running_.load();
    l.waiting = queued_.load() + requeued_.load();
    l.blocks_used = blocks_used_.load();
    l.blocks_total = blocks_total_;
    l.preemptions = preemptions_.load();
    l.kv_cache_bytes = kv_cache_bytes_;
    model::DeviceMemory m = ReadDeviceMemory();
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  int32_t max_model_len() const override { return max_model_len_; }
  int32_t vocab_size() const override {
    return static_cast<int32_t>(model_->config().vocab_size);
  }
  std::string device_name() const override { return model_->device().str(); }
  int32_t max_running() const override { return options_.max_running; }
  int32_t max_waiting() const override { return options_.max_waiting; }

 private:
  // The device's memory figures, read again when older than kDeviceMemoryRefreshMs.
  model::DeviceMemory ReadDeviceMemory() const {
    if (!model_->device().is_cuda()) return {};
    std::lock_guard<std::mutex> lock(memory_mu_);
    auto now = std::chrono::steady_clock::now();
    if (memory_read_at_ == std::chrono::steady_clock::time_point{} ||
        now - memory_read_at_ >= std::chrono::milliseconds(kDeviceMemoryRefreshMs)) {
      memory_ = model::QueryDeviceMemory(model_->device());
      memory_read_at_ = now;
    }
    return memory_;
  }

  absl::StatusOr<at::Tensor> RunModel(const model::StepBatch& batch) {
    try {
      return model_->Forward(batch, cache_);
    } catch (const c10::Error& e) {
      return absl::InternalError(std::string("model step failed: ") + e.what_without_backtrace());
    } catch (const std::exception& e) {
      return absl::InternalError(std::string("model step failed: ") + e.what());
    }
  }

  // Moves the inbox into the scheduler; waits while there is nothing to do.
  bool TakeInbox() {
    std::vector<EngineRequest> in;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !scheduler_.empty(); });
      if (stop_) return false;
      in.swap(inbox_);
    }
    for (EngineRequest& r : in) {
      uint64_t seed = r.sampling.seed ? *r.sampling.seed : rng_();
      auto req = std::make_unique<Request>(std::move(r), seed);
      req->id = next_id_++;
      req->tokens = req->req.prompt;
      req->num_prompt = req->num_tokens();
      req->options = req->req.sampling;
      req->options.logprobs |= req->options.top_logprobs > 0;
      req->state.prompt = req->req.prompt;
      if (options_.codec) req->text = options_.codec->NewStream();
      scheduler_.Add(req.get());
      live_.emplace(req->id, std::move(req));
    }
    return true;
  }

  void Loop() {
    while (TakeInbox()) {
      DropCancelled();
      if (scheduler_.empty()) {
        Flush();
        Publish();
        continue;
      }
      Step();
      if (scheduler_.empty()) Flush();
      Publish();
    }
    Flush();
    // Shutting down: end every request still here.
    for (auto& [id, req] : live_) {
      Delta d;
      Finalize(req.get(), FinishReason::kCancelled, &d);
      d.error = "worker shut down";
      req->req.sink->OnDelta(std::move(d));
    }
    live_.clear();
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
  }

  void DropCancelled() {
    for (auto it = live_.begin(); it != live_.end();) {
      Request* req = it->second.get();
      if (req->req.sink->Cancelled()) {
        Flush();  // its earlier tokens go first
        Delta d;
        Finalize(req, FinishReason::kCancelled, &d);
        req->req.sink->OnDelta(std::move(d));
        it = live_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Step() {
    auto t_plan = std::chrono::steady_clock::now();
    StepPlan plan = scheduler_.Schedule();
    preemptions_ += static_cast<int64_t>(plan.preempted.size());
    for (Sequence* s : plan.preempted) {
      R1_LOG(DEBUG) << "preempted " << static_cast<Request*>(s)->req.request_id;
    }
    if (plan.chunks.empty()) {
      Flush();
      return;
    }
    Clock::TimePoint now = options_.clock->Now();
    model::StepBatch batch;
    batch.tokens.reserve(plan.num_tokens);
    std::vector<Request*> sampled;
    for (const ScheduledChunk& c : plan.chunks) {
      Request* req = static_cast<Request*>(c.seq);
      if (req->scheduled_at == Clock::TimePoint{}) {
        req->scheduled_at = now;
        queued_--;
      }
      batch.tokens.insert(batch.tokens.end(), req->tokens.begin() + req->num_cached,
                          req->tokens.begin() + req->num_cached + c.num_new);
      model::SequenceStep s;
      s.num_cached = req->num_cached;
      s.num_new = c.num_new;
      s.block_table = req->blocks;
      s.want_logits = c.sample;
      batch.seqs.push_back(std::move(s));
      if (c.sample) sampled.push_back(req);
    }
    auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<at::Tensor> logits = RunModel(batch);
    // The GPU runs the step queued just now: deliver the previous step's tokens meanwhile.
    Flush();
    auto t1 = std::chrono::steady_clock::now();
    std::vector<SampleResult> results;
    if (logits.ok() && !sampled.empty()) {
      std::vector<const SamplingOptions*> opts;
      std::vector<SamplerState*> states;
      for (Request* r : sampled) {
        opts.push_back(&r->options);
        states.push_back(&r->state);
      }
      try {
        results = sample_on_device_ ? SampleBatchOnDevice(*logits, opts, states)
                                    : SampleBatch(*logits, opts, states);
      } catch (const std::exception& e) {
        logits = absl::InternalError(std::string("sampling failed: ") + e.what());
      }
    }
    if (!logits.ok()) {
      R1_LOG(ERROR) << "step failed, ending " << plan.chunks.size()
                    << " requests: " << logits.status().message();
      for (const ScheduledChunk& c : plan.chunks) {
        Request* req = static_cast<Request*>(c.seq);
        Delta d;
        Finalize(req, FinishReason::kError, &d);
        d.error = std::string(logits.status().message());
        req->req.sink->OnDelta(std::move(d));
        live_.erase(req->id);
      }
      return;
    }
    auto t2 = std::chrono::steady_clock::now();
    Scheduler::Commit(plan);
    Clock::TimePoint done = options_.clock->Now();
    for (size_t i = 0; i < sampled.size(); ++i) Emit(sampled[i], results[i], done);
    // On the CPU the next step's model call computes before it returns: deliver now.
    if (!model_->device().is_cuda()) Flush();
    R1_LOG(DEBUG) << "step: " << plan.chunks.size() << " sequences, " << plan.num_tokens
                  << " tokens; plan " << MillisBetween(t_plan, t0) << " ms, model "
                  << MillisBetween(t0, t1) << " ms, sampling " << MillisBetween(t1, t2)
                  << " ms, emit " << MillisBetween(t2, std::chrono::steady_clock::now()) << " ms";
  }

  void Emit(Request* req, const SampleResult& r, Clock::TimePoint now) {
    int32_t tok = r.token;
    req->tokens.push_back(tok);  // (the sampler appended it to state.output)
    if (req->first_token_at == Clock::TimePoint{}) req->first_token_at = now;
    req->last_token_at = now;

    Delta d;
    TokenInfo info;
    info.id = tok;
    if (req->options.logprobs) {
      info.logprob = r.logprob;
      info.top = r.top;
    }
    d.tokens.push_back(std::move(info));

    const model::ModelConfig& cfg = model_->config();
    const auto& stop_ids = req->req.stop_token_ids;
    FinishReason finish = FinishReason::kNone;
    bool string_stop = false;
    if (std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end()) {
      finish = FinishReason::kStop;
      d.matched_stop = options_.codec ? options_.codec->TokenText(tok) : std::to_string(tok);
    } else if (!req->req.ignore_eos && std::find(cfg.eos_token_ids.begin(),
                                                 cfg.eos_token_ids.end(),
                                                 tok) != cfg.eos_token_ids.end()) {
      finish = FinishReason::kStop;
    } else {
      if (req->text) {
        StopChecker::Result s = req->stop.Add(req->text->Add(tok));
        d.text = std::move(s.text);
        if (s.matched >= 0) {
          finish = FinishReason::kStop;
          string_stop = true;
          d.matched_stop = req->stop.stops()[s.matched];
        }
      }
      if (finish == FinishReason::kNone &&
          ((req->req.max_tokens > 0 && req->num_output() >= req->req.max_tokens) ||
           req->num_tokens() >= max_model_len_)) {
        finish = FinishReason::kLength;
      }
    }
    if (finish != FinishReason::kNone && !string_stop && req->text) {
      d.text += req->stop.Add(req->text->Finish()).text;
      d.text += req->stop.Flush();
    }
    if (finish != FinishReason::kNone) {
      Finalize(req, finish, &d);
      outbox_.emplace_back(req->req.sink, std::move(d));
      live_.erase(req->id);
      return;
    }
    outbox_.emplace_back(req->req.sink, std::move(d));
  }

  // Delivers the queued deltas (each request's in order). Emit queues them; on CUDA they are
  // delivered after the next step is queued, so that the sinks' work (protobuf, gRPC writes,
  // metrics) runs while the GPU computes it. On the CPU, where a step computes before the
  // model call returns, the step delivers its own deltas at its end.
  void Flush() {
    for (auto& [sink, d] : outbox_) sink->OnDelta(std::move(d));
    outbox_.clear();
  }

  // Fills the totals of a last delta and takes the request out of the scheduler.
  void Finalize(Request* req, FinishReason finish, Delta* d) {
    Clock::TimePoint now = options_.clock->Now();
    d->finish = finish;
    d->prompt_tokens = req->num_prompt;
    d->completion_tokens = req->num_output();
    Clock::TimePoint arrival = req->req.arrival;
    if (req->scheduled_at == Clock::TimePoint{}) {
      queued_--;  // never left the queue
      d->queued_ms = MillisBetween(arrival, now);
    } else {
      d->queued_ms = MillisBetween(arrival, req->scheduled_at);
    }
    if (req->first_token_at != Clock::TimePoint{}) {
      d->ttft_ms = MillisBetween(arrival, req->first_token_at);
    }
    d->total_ms = MillisBetween(arrival, now);
    scheduler_.Remove(req);
  }

  EngineOptions options_;
  std::unique_ptr<model::Qwen2Model> model_;
  model::KvCache cache_;
  BlockAllocator allocator_;
  Scheduler scheduler_;
  int32_t max_model_len_;
  std::mt19937_64 rng_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Request>> live_;
  std::vector<std::pair<std::shared_ptr<RequestSink>, Delta>> outbox_;  // see Flush()

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
  int64_t blocks_total_ = 0;
  int64_t kv_cache_bytes_ = 0;
  bool sample_on_device_ = false;

  mutable std::mutex memory_mu_;
  mutable model::DeviceMemory memory_;
  mutable std::chrono::steady_clock::time_point memory_read_at_{};
};

// The KV cache's bytes: --kv-cache-memory when given; otherwise, on CUDA, the fraction of the
// memory free now that the model is loaded (the caching allocator's idle blocks count as free:
// it hands them out again), and on CPU the default.
absl::StatusOr<int64_t> KvCacheBytes(const EngineOptions& options, const at::Device& device) {
  if (options.kv_cache_memory > 0) return options.kv_cache_memory;
  if (!device.is_cuda()) return kDefaultCpuKvCacheMemory;
  model::DeviceMemory m = model::QueryDeviceMemory(device);
  if (!m.available) {
    return absl::InternalError("cannot read the free memory of " + device.str() +
                               " to size the KV cache: give --kv-cache-memory");
  }
  int64_t free = m.free_bytes + std::max<int64_t>(m.reserved_bytes - m.allocated_bytes, 0);
  int64_t bytes = static_cast<int64_t>(static_cast<double>(free) * options.kv_cache_fraction);
  R1_LOG(INFO) << "KV cache: --kv-cache-fraction " << options.kv_cache_fraction << " of "
               << free << " free bytes on " << device.str() << " (" << m.total_bytes
               << " in all) = " << bytes << " bytes";
  return bytes;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  if (!(options.kv_cache_fraction > 0 && options.kv_cache_fraction <= 1)) {
    return absl::InvalidArgumentError("--kv-cache-fraction must be in (0, 1], got " +
                                      absl::StrCat(options.kv_cache_fraction));
  }
  if (options.kv_cache_memory < 0) {
    return absl::InvalidArgumentError("--kv-cache-memory must be >= 0");
  }
  if (options.block_size <= 0) return absl::InvalidArgumentError("--block-size must be > 0");
  if (options.max_running <= 0) return absl::InvalidArgumentError("--max-running must be > 0");
  if (options.max_waiting < 0) return absl::InvalidArgumentError("--max-waiting must be >= 0");
  if (options.prefill_chunk <= 0) {
    return absl::InvalidArgumentError("--prefill-chunk must be > 0");
  }
  model::LoadOptions lo;
  lo.device = options.device;
  lo.dtype = options.dtype;
  lo.num_threads = options.threads;
  std::unique_ptr<model::Qwen2Model> model;
  try {
    R1_ASSIGN_OR_RETURN(model, model::Qwen2Model::Load(options.model_dir, lo));
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("loading the model: ") + e.what_without_backtrace());
  }
  const model::ModelConfig& cfg = model->config();
  int64_t per_block = model::KvCache::BytesPerBlock(cfg, options.block_size, model->dtype());
  R1_ASSIGN_OR_RETURN(int64_t kv_bytes, KvCacheBytes(options, model->device()));
  int64_t num_blocks = per_block > 0 ? kv_bytes / per_block : 0;
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(
        "a KV cache of " + std::to_string(kv_bytes) + " bytes holds no KV block (one block of " +
        std::to_string(options.block_size) + " tokens needs " + std::to_string(per_block) +
        " bytes): raise --kv-cache-memory or --kv-cache-fraction");
  }
  int64_t max_len = options.max_model_len > 0 ? options.max_model_len : cfg.max_position_embeddings;
  if (cfg.max_position_embeddings > 0) max_len = std::min(max_len, cfg.max_position_embeddings);
  max_len = std::min<int64_t>(max_len, num_blocks * options.block_size);
  max_len = std::min<int64_t>(max_len, INT32_MAX);
  R1_LOG(INFO) << "KV cache: " << num_blocks * per_block << " bytes, " << num_blocks
               << " blocks of " << options.block_size << " tokens (" << per_block
               << " bytes each); max model length " << max_len;
  std::unique_ptr<EngineImpl> engine;
  try {
    engine = std::make_unique<EngineImpl>(options, std::move(model), num_blocks,
                                          static_cast<int32_t>(max_len));
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(std::string("allocating the KV cache: ") +
                                        e.what_without_backtrace());
  }
  R1_RETURN_IF_ERROR(engine->WarmUp());
  engine->Start();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace r1::engine
