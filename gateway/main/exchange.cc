#include "gateway/main/exchange.h"

#include <ctime>

#include "common/log.h"
#include "gateway/upstream/status_map.h"

namespace r1::gw {
namespace {

const char* FinishName(r1serve::v1::FinishReason f) {
  switch (f) {
    case r1serve::v1::FINISH_REASON_STOP: return "stop";
    case r1serve::v1::FINISH_REASON_LENGTH: return "length";
    case r1serve::v1::FINISH_REASON_CANCELLED: return "abort";
    case r1serve::v1::FINISH_REASON_ERROR: return "error";
    default: return "stop";
  }
}

std::string RandomId(Random* random) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  uint64_t a = random->Next(), b = random->Next();
  for (int i = 0; i < 16; ++i) s.push_back(kHex[(a >> (4 * i)) & 15]);
  for (int i = 0; i < 8; ++i) s.push_back(kHex[(b >> (4 * i)) & 15]);
  return s;
}

void BuildProto(const GenParams& p, const std::string& id, r1serve::v1::GenerateRequest* r) {
  r->set_request_id(id);
  if (p.kind == ApiKind::kChat) {
    auto* chat = r->mutable_chat();
    for (const ChatTurn& t : p.messages) {
      auto* m = chat->add_messages();
      m->set_role(t.role);
      m->set_content(t.content);
    }
  } else if (p.prompt) {
    r->set_text(*p.prompt);
  } else {
    auto* ids = r->mutable_token_ids();
    for (int32_t id : p.prompt_ids) ids->add_ids(id);
  }
  auto* s = r->mutable_sampling();
  s->set_temperature(static_cast<float>(p.temperature));
  s->set_top_p(static_cast<float>(p.top_p));
  s->set_top_k(p.top_k);
  s->set_min_p(static_cast<float>(p.min_p));
  s->set_repetition_penalty(static_cast<float>(p.repetition_penalty));
  s->set_presence_penalty(static_cast<float>(p.presence_penalty));
  s->set_frequency_penalty(static_cast<float>(p.frequency_penalty));
  if (p.seed) s->set_seed(*p.seed);
  r->set_max_tokens(p.max_tokens);
  for (const std::string& stop : p.stop) r->add_stop(stop);
  for (int32_t id : p.stop_token_ids) r->add_stop_token_ids(id);
  r->set_ignore_eos(p.ignore_eos);
  r->set_logprobs(p.logprobs);
  r->set_top_logprobs(p.top_logprobs);
}

// Failures that say something about the worker (they count against its breaker).
bool WorkerFault(int code) {
  auto c = static_cast<grpc::StatusCode>(code);
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         c == grpc::StatusCode::INTERNAL || c == grpc::StatusCode::UNKNOWN ||
         c == grpc::StatusCode::DEADLINE_EXCEEDED || c == grpc::StatusCode::DATA_LOSS;
}

}  // namespace

Exchange::Exchange(GatewayContext* ctx, std::shared_ptr<http::Session> session, GenParams params,
                   std::string route)
    : ctx_(ctx),
      session_(std::move(session)),
      params_(std::move(params)),
      route_(std::move(route)),
      backoff_(ctx->options.retry_base_ms, ctx->options.retry_cap_ms, ctx->random),
      timer_(session_->executor()),
      splitter_(params_.kind == ApiKind::kChat && ctx->options.reasoning_split) {}

Exchange::~Exchange() = default;

void Exchange::Start() {
  ctx_->budget.RequestStarted();
  start_ = ctx_->clock->Now();
  deadline_ = std::chrono::system_clock::now() +
              std::chrono::milliseconds(static_cast<int64_t>(ctx_->options.request_timeout_s * 1000));
  meta_.kind = params_.kind;
  meta_.id = (params_.kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-") + RandomId(ctx_->random);
  meta_.created = static_cast<int64_t>(std::time(nullptr));
  meta_.model = params_.model;
  meta_.include_usage = params_.stream && params_.include_usage;
  BuildProto(params_, meta_.id, &proto_);
  session_->SetCancelHandler([self = shared_from_this()] { self->OnClientGone(); });
  Attempt();
}

void Exchange::Attempt() {
  if (done_) return;
  worker_ = ctx_->pool->Pick(tried_);
  if (!worker_) {
    if (last_failure_) {
      FailBeforeFirstByte(last_failure_->error_code(), last_failure_->error_message());
    } else if (ctx_->pool->AllBreakersOpen()) {
      ctx_->metrics->Rejected("no_worker");
      SendError(ctx_, *session_, route_, 503, "server_error",
                "every worker's circuit breaker is open; retry later", "", "no_worker_available",
                {{"Retry-After", std::to_string(ctx_->options.retry_after_s)}});
      Finish(503);
    } else {
      ctx_->metrics->Rejected("no_worker");
      SendError(ctx_, *session_, route_, 503, "server_error", "no healthy worker; retry later",
                "", "no_worker_available",
                {{"Retry-After", std::to_string(ctx_->options.retry_after_s)}});
      Finish(503);
    }
    return;
  }
  tried_.push_back(worker_.get());
  ResetOutput();
  ctx_->metrics->Attempt(worker_->address());
  ++worker_->active;
  const int attempt = ++attempt_;
  auto self = shared_from_this();
  std::shared_ptr<Worker> worker = worker_;
  call_ = GenerateCall::Start(
      worker_->stub(), proto_, deadline_,
      [self, attempt](r1serve::v1::GenerateResponse&& m) {
        self->session_->Post([self, attempt, m = std::move(m)]() mutable {
          self->OnMessage(attempt, std::move(m));
        });
      },
      [self, attempt, worker](const grpc::Status& status) {
        --worker->active;
        self->session_->Post([self, attempt, status] { self->OnDone(attempt, status); });
      });
}

void Exchange::ResetOutput() {
  got_first_ = false;
  splitter_ = ReasoningSplitter(splitter_.enabled());
  text_.clear();
  logprobs_.clear();
  text_offset_ = 0;
  finish_ = r1serve::v1::FINISH_REASON_UNSPECIFIED;
  error_message_.clear();
  usage_ = {};
}

std::vector<LogprobEntry> Exchange::Logprobs(const r1serve::v1::GenerateResponse& m) const {
  std::vector<LogprobEntry> out;
  out.reserve(m.logprobs_size());
  for (const auto& lp : m.logprobs()) {
    LogprobEntry e;
    e.token = lp.token();
    e.logprob = lp.logprob();
    for (const auto& t : lp.top_logprobs()) e.top.emplace_back(t.token(), t.logprob());
    out.push_back(std::move(e));
  }
  return out;
}

void Exchange::OnMessage(int attempt, r1serve::v1::GenerateResponse&& m) {
  if (attempt != attempt_ || done_) return;
  const bool first = !got_first_;
  if (first) {
    got_first_ = true;
    if (in_retry_) {
      ctx_->budget.RetryFinished();
      in_retry_ = false;
    }
    worker_->breaker().OnSuccess();
    ctx_->metrics->TimeToFirstToken(MillisBetween(start_, ctx_->clock->Now()) / 1000.0);
    if (params_.stream) {
      session_->StartStream();
      sent_to_client_ = true;
    }
  }
  if (m.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
    finish_ = m.finish_reason();
    error_message_ = m.error_message();
    usage_.prompt_tokens = m.usage().prompt_tokens();
    usage_.completion_tokens = m.usage().completion_tokens();
  }
  std::vector<LogprobEntry> lps;
  if (params_.logprobs) lps = Logprobs(m);
  if (!params_.stream) {
    text_.append(m.text());
    for (auto& e : lps) logprobs_.push_back(std::move(e));
    return;
  }
  const std::vector<LogprobEntry>* lp = params_.logprobs ? &lps : nullptr;
  if (params_.kind == ApiKind::kChat) {
    SplitText d = splitter_.Feed(m.text());
    if (first || !d.reasoning.empty() || !d.content.empty() || !lps.empty())
      session_->SendChunk(SseData(ChatChunk(meta_, first, d, lp, "")));
  } else if (first || !m.text().empty() || !lps.empty()) {
    session_->SendChunk(SseData(CompletionChunk(meta_, m.text(), lp, text_offset_, "")));
    text_offset_ += m.text().size();
  }
}

void Exchange::OnDone(int attempt, const grpc::Status& status) {
  if (attempt != attempt_ || done_) return;
  call_.reset();
  if (status.ok() && finish_ != r1serve::v1::FINISH_REASON_UNSPECIFIED &&
      finish_ != r1serve::v1::FINISH_REASON_ERROR) {
    if (!got_first_) worker_->breaker().OnSuccess();
    return Complete();
  }
  int code;
  std::string message;
  if (!status.ok()) {
    code = status.error_code();
    message = status.error_message();
  } else if (finish_ == r1serve::v1::FINISH_REASON_ERROR) {
    code = grpc::StatusCode::INTERNAL;
    message = error_message_.empty() ? "the worker failed" : error_message_;
  } else {
    code = grpc::StatusCode::UNKNOWN;
    message = "the worker's stream ended without a finish reason";
  }
  if (WorkerFault(code)) worker_->breaker().OnFailure();
  else if (!got_first_) worker_->breaker().OnSuccess();  // the worker answered properly
  if (code == grpc::StatusCode::UNAVAILABLE) worker_->healthy = false;  // until the next poll
  R1_LOG(INFO) << meta_.id << ": attempt " << attempt_ << " on " << worker_->address()
               << " failed: " << CodeLabel(code) << ": " << EscapeForLog(message);
  if (sent_to_client_) return FailStream(message);

  last_failure_ = grpc::Status(static_cast<grpc::StatusCode>(code), message);
  if (!IsRetryableCode(code) || attempt_ >= ctx_->options.max_attempts)
    return FailBeforeFirstByte(code, message);
  if (!in_retry_) {
    if (!ctx_->budget.TryStartRetry()) {
      ctx_->metrics->Retry("budget_exhausted");
      return FailBeforeFirstByte(code, message);
    }
    in_retry_ = true;
  }
  ctx_->metrics->Retry(CodeLabel(code));
  timer_.expires_after(std::chrono::milliseconds(backoff_.NextMs()));
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->Attempt();
  });
}

void Exchange::Complete() {
  const char* finish = FinishName(finish_);
  if (params_.stream) {
    if (params_.kind == ApiKind::kChat) {
      SplitText rest = splitter_.Finish();
      if (!rest.reasoning.empty() || !rest.content.empty())
        session_->SendChunk(SseData(ChatChunk(meta_, false, rest, nullptr, "")));
      session_->SendChunk(SseData(ChatChunk(meta_, false, {}, nullptr, finish)));
    } else {
      session_->SendChunk(SseData(CompletionChunk(meta_, "", nullptr, text_offset_, finish)));
    }
    if (meta_.include_usage) session_->SendChunk(SseData(UsageChunk(meta_, usage_)));
    session_->SendChunk("data: [DONE]\n\n");
    session_->EndStream();
  } else {
    const std::vector<LogprobEntry>* lp = params_.logprobs ? &logprobs_ : nullptr;
    std::string body;
    if (params_.kind == ApiKind::kChat) {
      ReasoningSplitter split(splitter_.enabled());
      SplitText a = split.Feed(text_);
      SplitText b = split.Finish();
      body = ChatResponse(meta_, split.enabled(), a.reasoning + b.reasoning, a.content + b.content,
                          lp, finish, usage_);
    } else {
      body = CompletionResponse(meta_, text_, lp, finish, usage_);
    }
    session_->SendResponse(200, "application/json", std::move(body));
  }
  ctx_->metrics->Request(route_, 200);
  ctx_->metrics->EndToEnd(MillisBetween(start_, ctx_->clock->Now()) / 1000.0);
  Finish(200);
}

void Exchange::FailBeforeFirstByte(int code, const std::string& message) {
  HttpErrorKind kind = HttpForStatusCode(code);
  http::Headers extra;
  if (kind.http_status == 503 || kind.http_status == 429)
    extra.emplace_back("Retry-After", std::to_string(ctx_->options.retry_after_s));
  SendError(ctx_, *session_, route_, kind.http_status, kind.type, message, "", CodeLabel(code),
            extra);
  Finish(kind.http_status);
}

void Exchange::FailStream(const std::string& message) {
  if (params_.kind == ApiKind::kChat) {
    session_->SendChunk(SseData(ChatChunk(meta_, false, {}, nullptr, "error")));
  } else {
    session_->SendChunk(SseData(CompletionChunk(meta_, "", nullptr, text_offset_, "error")));
  }
  session_->SendChunk(SseData(ErrorJson("the worker failed mid-stream: " + message,
                                        "server_error", "", "upstream_error")));
  session_->SendChunk("data: [DONE]\n\n");
  session_->EndStream();
  ctx_->metrics->Request(route_, 200);
  Finish(200);
}

void Exchange::OnClientGone() {
  if (done_) return;
  if (call_) call_->Cancel();
  if (worker_ && !got_first_) worker_->breaker().OnAbandoned();
  ctx_->metrics->Request(route_, 499);
  Finish(499);
}

void Exchange::Finish(unsigned /*http_status*/) {
  if (done_) return;
  done_ = true;
  timer_.cancel();
  if (in_retry_) {
    ctx_->budget.RetryFinished();
    in_retry_ = false;
  }
  ctx_->budget.RequestFinished();
  --ctx_->active_requests;
  session_->SetCancelHandler(nullptr);
}

}  // namespace r1::gw
