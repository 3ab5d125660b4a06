#include "worker/service/inference_service.h"

#include <mutex>

#include "common/log.h"
#include "worker/service/stream_message.h"
#include "worker/service/validate.h"

namespace r1::service {
namespace {

using r1serve::v1::GenerateRequest;
using r1serve::v1::GenerateResponse;

grpc::Status ToGrpc(const absl::Status& s) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (s.code()) {
    case absl::StatusCode::kOk: return grpc::Status::OK;
    case absl::StatusCode::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case absl::StatusCode::kResourceExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case absl::StatusCode::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case absl::StatusCode::kCancelled: code = grpc::StatusCode::CANCELLED; break;
    case absl::StatusCode::kDeadlineExceeded: code = grpc::StatusCode::DEADLINE_EXCEEDED; break;
    case absl::StatusCode::kFailedPrecondition: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    default: code = grpc::StatusCode::INTERNAL; break;
  }
  return grpc::Status(code, std::string(s.message()));
}

class GenerateStream;

// The call's side of its choices, shared by the engine (which may outlive the call) and the
// reactor. Each choice's deltas are merged into its pending message while a write is in
// flight; the next write takes the next choice with one, in turn, so every choice moves.
class StreamSink {
 public:
  StreamSink(GenerateStream* stream, WorkerMetrics* metrics,
             std::shared_ptr<engine::TextCodec> codec, bool logprobs, const Clock* clock,
             Clock::TimePoint arrival, int choices)
      : stream_(stream), metrics_(metrics), codec_(std::move(codec)), logprobs_(logprobs),
        clock_(clock), arrival_(arrival), choices_(static_cast<size_t>(choices)),
        finals_left_(choices) {}

  // On the engine thread.
  void OnDelta(int choice, engine::Delta delta);
  bool Cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  // Before the engine has the requests. Sent in choice 0's first message's prompt_text
  // (GenerateRequest.echo).
  void SetEchoText(std::string text) { echo_text_ = std::move(text); }
  // Choice 0's first message (with the prompt's text or log-probabilities) is the call's
  // first: the other choices' output waits for it.
  void HoldOthersUntilFirst() { hold_others_ = true; }

  // Reactor side.
  void OnCancel();
  void OnWriteDone(bool ok);
  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    stream_ = nullptr;
  }

 private:
  struct Choice {
    r1serve::v1::GenerateResponse pending;
    bool has_pending = false;
    bool pending_final = false;  // `pending` holds the choice's last message
    Clock::TimePoint last_token{};  // engine thread only
  };
  void Record(Choice& c, const engine::Delta& d);
  // Starts the next write or the Finish if one is due. Called with mu_ held; the action runs
  // after the caller releases the lock.
  enum class Action { kNone, kWrite, kWriteLast, kFinishCancelled };
  Action NextLocked();
  void Run(Action a);

  std::mutex mu_;
  GenerateStream* stream_;
  WorkerMetrics* metrics_;
  std::shared_ptr<engine::TextCodec> codec_;
  bool logprobs_;
  const Clock* clock_;
  Clock::TimePoint arrival_;
  std::atomic<bool> cancelled_{false};
  std::vector<Choice> choices_;
  int finals_left_;  // choices whose last message is not written yet
  size_t next_ = 0;  // the choice whose pending message goes first next time
  bool hold_others_ = false;
  bool write_in_flight_ = false;
  bool finish_called_ = false;
  GenerateResponse writing_;
  std::string echo_text_;
};

// One choice as the engine sees it.
class ChoiceSink final : public engine::RequestSink {
 public:
  ChoiceSink(std::shared_ptr<StreamSink> stream, int index)
      : stream_(std::move(stream)), index_(index) {}
  void OnDelta(engine::Delta delta) override { stream_->OnDelta(index_, std::move(delta)); }
  bool Cancelled() const override { return stream_->Cancelled(); }

 private:
  std::shared_ptr<StreamSink> stream_;
  const int index_;
};

class GenerateStream final : public grpc::ServerWriteReactor<GenerateResponse> {
 public:
  GenerateStream(std::atomic<int>* active) : active_(active) { active_->fetch_add(1); }

  // Fails the call before it started.
  void Reject(const grpc::Status& status) { Finish(status); }
  void Attach(std::shared_ptr<StreamSink> sink) { sink_ = std::move(sink); }

  void OnCancel() override {
    if (sink_) sink_->OnCancel();
  }
  void OnWriteDone(bool ok) override { sink_->OnWriteDone(ok); }
  void OnDone() override {
    if (sink_) sink_->Detach();
    active_->fetch_sub(1);
    delete this;
  }

 private:
  std::atomic<int>* active_;
  std::shared_ptr<StreamSink> sink_;
};

void StreamSink::Record(Choice& c, const engine::Delta& d) {
  Clock::TimePoint now = clock_->Now();
  if (!d.tokens.empty()) {
    if (c.last_token == Clock::TimePoint{}) {
      metrics_->time_to_first_token->Observe(MillisBetween(arrival_, now) / 1e3);
    } else {
      metrics_->inter_token_latency->Observe(MillisBetween(c.last_token, now) / 1e3 /
                                             d.tokens.size());
    }
    c.last_token = now;
    metrics_->generation_tokens->Increment(static_cast<double>(d.tokens.size()));
  }
  if (d.finish != engine::FinishReason::kNone) {
    metrics_->requests(d.finish).Increment();
    metrics_->prompt_tokens->Increment(d.prompt_tokens);
    metrics_->e2e_latency->Observe(d.total_ms / 1e3);
    metrics_->queue_time->Observe(d.queued_ms / 1e3);
  }
}

void StreamSink::OnDelta(int choice, engine::Delta delta) {
  Choice& c = choices_[static_cast<size_t>(choice)];
  Record(c, delta);
  Action a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stream_ || finish_called_) return;
    if (delta.finish != engine::FinishReason::kNone) c.pending_final = true;
    if (choice == 0 && !echo_text_.empty())
      c.pending.set_prompt_text(std::move(echo_text_)), echo_text_.clear();
    AppendDelta(std::move(delta), codec_.get(), logprobs_, &c.pending);
    c.has_pending = true;
    a = NextLocked();
  }
  Run(a);
}

StreamSink::Action StreamSink::NextLocked() {
  if (write_in_flight_ || finish_called_) return Action::kNone;
  if (cancelled_) {
    finish_called_ = true;
    return Action::kFinishCancelled;
  }
  const size_t n = choices_.size();
  size_t k = 0;
  for (; k < n; ++k) {
    const size_t j = (next_ + k) % n;
    if (choices_[j].has_pending && (!hold_others_ || j == 0)) break;
  }
  if (k == n) return Action::kNone;
  const size_t j = (next_ + k) % n;
  Choice& c = choices_[j];
  next_ = j + 1;
  if (j == 0) hold_others_ = false;
  writing_.Clear();
  writing_.Swap(&c.pending);
  writing_.set_choice_index(static_cast<uint32_t>(j));
  c.has_pending = false;
  write_in_flight_ = true;
  if (c.pending_final && --finals_left_ == 0) {
    finish_called_ = true;
    return Action::kWriteLast;
  }
  return Action::kWrite;
}

void StreamSink::Run(Action a) {
  // stream_ stays valid here: OnDone cannot run before the write or Finish we start.
  switch (a) {
    case Action::kNone: break;
    case Action::kWrite: stream_->StartWrite(&writing_); break;
    case Action::kWriteLast:
      stream_->StartWriteAndFinish(&writing_, grpc::WriteOptions(), grpc::Status::OK);
      break;
    case Action::kFinishCancelled:
      stream_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      break;
  }
}

void StreamSink::OnCancel() {
  cancelled_ = true;
  Action a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    a = NextLocked();
  }
  Run(a);
}

void StreamSink::OnWriteDone(bool ok) {
  Action a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (!ok) cancelled_ = true;
    a = NextLocked();
  }
  Run(a);
}

}  // namespace

InferenceService::InferenceService(engine::Engine* engine, std::shared_ptr<PromptCodec> codec,
                                   WorkerMetrics* metrics, ServiceOptions options)
    : engine_(engine), codec_(std::move(codec)), metrics_(metrics), options_(std::move(options)) {
  if (options_.resident_at_start == 0) options_.resident_at_start = ResidentMemoryBytes();
}

grpc::ServerWriteReactor<GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const GenerateRequest* request) {
  Clock::TimePoint arrival = options_.clock->Now();
  auto* stream = new GenerateStream(&active_);
  if (draining_) {
    metrics_->rejected_draining->Increment();
    stream->Reject(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is draining"));
    return stream;
  }
  RequestLimits limits{engine_->max_model_len(), engine_->vocab_size(), options_.compiler,
                       options_.generation};
  absl::StatusOr<int> choices = ChoiceCount(*request);
  if (choices.ok() && *choices > engine_->max_waiting())
    choices = absl::InvalidArgumentError("n: " + std::to_string(*choices) +
                                         " choices exceed this worker's --max-waiting " +
                                         std::to_string(engine_->max_waiting()));
  absl::StatusOr<engine::EngineRequest> req =
      choices.ok() ? ToEngineRequest(*request, limits, codec_.get()) : choices.status();
  if (!req.ok()) {
    metrics_->rejected_invalid->Increment();
    R1_LOG(DEBUG) << "rejected request " << EscapeForLog(request->request_id()) << ": "
                  << req.status().message();
    stream->Reject(ToGrpc(req.status()));
    return stream;
  }
  if (req->request_id.empty()) req->request_id = "req-" + std::to_string(next_id_++);
  req->arrival = arrival;
  auto sink = std::make_shared<StreamSink>(stream, metrics_,
                                           codec_ ? codec_->text_codec() : nullptr,
                                           req->sampling.logprobs, options_.clock, arrival,
                                           *choices);
  if (request->echo()) {
    if (request->has_text()) {
      sink->SetEchoText(request->text());
    } else if (codec_) {
      auto text = codec_->Decode(req->prompt);
      if (text.ok()) sink->SetEchoText(*text);
    }
  }
  if (request->echo() || req->prompt_logprobs >= 0) sink->HoldOthersUntilFirst();
  stream->Attach(sink);
  std::vector<engine::EngineRequest> reqs;
  reqs.reserve(static_cast<size_t>(*choices));
  for (int k = 0; k < *choices; ++k) {
    reqs.push_back(ForChoice(*req, k, *choices));
    reqs.back().sink = std::make_shared<ChoiceSink>(sink, k);
  }
  (void)context;
  absl::Status st = engine_->SubmitAll(std::move(reqs));
  if (!st.ok()) {
    if (st.code() == absl::StatusCode::kResourceExhausted) {
      metrics_->rejected_queue_full->Increment();
    } else {
      metrics_->rejected_draining->Increment();
    }
    sink->Detach();
    stream->Attach(nullptr);
    stream->Reject(ToGrpc(st));
  }
  return stream;
}

grpc::ServerUnaryReactor* InferenceService::GetLoad(grpc::CallbackServerContext* context,
                                                    const r1serve::v1::LoadRequest*,
                                                    r1serve::v1::LoadReport* report) {
  *report = MakeLoadReport();
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const r1serve::v1::TokenizeRequest* request,
                                                     r1serve::v1::TokenizeResponse* response) {
  auto* reactor = context->DefaultReactor();
  absl::StatusOr<std::vector<int32_t>> ids;
  if (!codec_) {
    ids = absl::InvalidArgumentError("this worker has no tokenizer");
  } else if (request->has_text()) {
    ids = codec_->EncodeText(request->text());
  } else if (request->has_chat()) {
    ids = EncodeChatPrompt(request->chat(), codec_.get());
  } else {
    ids = absl::InvalidArgumentError("prompt: one of text or chat is required");
  }
  if (!ids.ok()) {
    reactor->Finish(ToGrpc(absl::InvalidArgumentError(ids.status().message())));
    return reactor;
  }
  auto text_codec = codec_->text_codec();
  for (int32_t id : *ids) {
    response->add_token_ids(id);
    response->add_token_texts(text_codec->TokenText(id));
  }
  response->set_max_model_len(static_cast<uint32_t>(engine_->max_model_len()));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* context,
                                                       const r1serve::v1::DetokenizeRequest* request,
                                                       r1serve::v1::DetokenizeResponse* response) {
  auto* reactor = context->DefaultReactor();
  std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= engine_->vocab_size()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "token_ids[" + std::to_string(i) + "]: " + std::to_string(ids[i]) +
                                       " is outside the vocabulary"));
      return reactor;
    }
  }
  absl::StatusOr<std::string> text =
      codec_ ? codec_->Decode(ids) : absl::InvalidArgumentError("this worker has no tokenizer");
  if (!text.ok()) {
    reactor->Finish(ToGrpc(absl::InvalidArgumentError(text.status().message())));
    return reactor;
  }
  response->set_text(*text);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void InferenceService::StartDraining() {
  draining_ = true;
  engine_->StopAccepting();
}

r1serve::v1::LoadReport InferenceService::MakeLoadReport() const {
  engine::EngineLoad load = engine_->Load();
  r1serve::v1::LoadReport r;
  r.set_running(load.running);
  r.set_waiting(load.waiting);
  r.set_kv_blocks_used(load.blocks_used);
  r.set_kv_blocks_total(load.blocks_total);
  ReportedMemory mem = MemoryForReport(load, options_.memory_limit, options_.resident_at_start);
  r.set_device_memory_used_bytes(mem.used);
  r.set_device_memory_total_bytes(mem.total);
  r.set_max_running(engine_->max_running());
  r.set_max_waiting(engine_->max_waiting());
  r.set_max_model_len(engine_->max_model_len());
  r.set_model_id(options_.model_id);
  r.set_device(engine_->device_name());
  r.set_draining(draining_.load());
  r.set_kv_block_size(static_cast<uint32_t>(load.block_size));
  r.set_prefix_caching(load.prefix_caching);
  r.set_resume(true);  // ToEngineRequest takes GenerateRequest.resume
  const GenerationDefaults& g = options_.generation;
  auto* d = r.mutable_generation_defaults();
  d->set_source(g.source);
  if (g.temperature) d->set_temperature(*g.temperature);
  if (g.top_p) d->set_top_p(*g.top_p);
  if (g.top_k) d->set_top_k(*g.top_k);
  if (codec_) {
    r.set_chat_template(codec_->chat_template_name());
    r.set_tools(codec_->supports_tools());
  }
  return r;
}

void InferenceService::UpdateMetrics() {
  engine::EngineLoad load = engine_->Load();
  metrics_->Update(load, MemoryForReport(load, options_.memory_limit, options_.resident_at_start));
}

}  // namespace r1::service
