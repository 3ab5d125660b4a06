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

// The Generate request of choice `k` (of n) for prompt `prompt` (completions) or the chat.
void BuildProto(const GenParams& p, size_t prompt, uint32_t k, const std::string& id,
                r1serve::v1::GenerateRequest* r) {
  r->set_request_id(p.n * (p.kind == ApiKind::kChat ? 1 : p.prompts.size()) > 1
                        ? id + "-" + std::to_string(prompt * p.n + k)
                        : id);
  if (p.kind == ApiKind::kChat) {
    auto* chat = r->mutable_chat();
    for (const ChatTurn& t : p.messages) {
      auto* m = chat->add_messages();
      m->set_role(t.role);
      m->set_content(t.content);
    }
  } else if (p.prompts[prompt].text) {
    r->set_text(*p.prompts[prompt].text);
  } else {
    auto* ids = r->mutable_token_ids();
    for (int32_t t : p.prompts[prompt].ids) ids->add_ids(t);
  }
  const SamplingOptions& o = p.sampling;
  auto* s = r->mutable_sampling();
  s->set_temperature(o.temperature);
  s->set_top_p(o.top_p);
  s->set_top_k(o.top_k);
  s->set_min_p(o.min_p);
  s->set_repetition_penalty(o.repetition_penalty);
  s->set_presence_penalty(o.presence_penalty);
  s->set_frequency_penalty(o.frequency_penalty);
  // With a seed, the n choices of one prompt differ but stay repeatable.
  if (o.seed) s->set_seed(*o.seed + k);
  r->set_max_tokens(p.max_tokens);
  for (const std::string& stop : p.stop) r->add_stop(stop);
  for (int32_t t : p.stop_token_ids) r->add_stop_token_ids(t);
  r->set_ignore_eos(p.ignore_eos);
  r->set_logprobs(o.logprobs);
  r->set_top_logprobs(static_cast<uint32_t>(o.top_logprobs));
}

// Failures that say something about the worker (they count against its breaker).
bool WorkerFault(int code) {
  auto c = static_cast<grpc::StatusCode>(code);
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         c == grpc::StatusCode::INTERNAL || c == grpc::StatusCode::UNKNOWN ||
         c == grpc::StatusCode::DEADLINE_EXCEEDED || c == grpc::StatusCode::DATA_LOSS;
}

}  // namespace

void Exchange::Choice::ResetOutput() {
  got_first = false;
  splitter = ReasoningSplitter(splitter.enabled());
  text.clear();
  logprobs.clear();
  text_offset = 0;
  finish = r1serve::v1::FINISH_REASON_UNSPECIFIED;
  error_message.clear();
  usage = {};
}

Exchange::Exchange(GatewayContext* ctx, std::shared_ptr<http::Session> session, GenParams params,
                   std::string route)
    : ctx_(ctx), session_(std::move(session)), params_(std::move(params)), route_(std::move(route)) {}

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
  const bool split = params_.kind == ApiKind::kChat && ctx_->options.reasoning_split;
  const size_t prompts = params_.kind == ApiKind::kChat ? 1 : params_.prompts.size();
  for (size_t p = 0; p < prompts; ++p) {
    for (uint32_t k = 0; k < params_.n; ++k) {
      auto c = std::make_unique<Choice>(static_cast<int>(choices_.size()), ctx_,
                                        session_->executor(), split);
      BuildProto(params_, p, k, meta_.id, &c->proto);
      choices_.push_back(std::move(c));
    }
  }
  session_->SetCancelHandler([self = shared_from_this()] { self->OnClientGone(); });
  for (auto& c : choices_) Attempt(*c);
}

void Exchange::Attempt(Choice& c) {
  if (done_) return;
  c.worker = ctx_->pool->Pick(c.tried);
  if (!c.worker) {
    if (c.last_failure)
      return ChoiceFailed(c, c.last_failure->error_code(), c.last_failure->error_message());
    const std::string message = ctx_->pool->AllBreakersOpen()
                                    ? "every worker's circuit breaker is open; retry later"
                                    : "no healthy worker; retry later";
    if (stream_started_) return FailStream(c, message);
    ctx_->metrics->Rejected("no_worker");
    SendError(ctx_, *session_, route_, 503, "server_error", message, "", "no_worker_available",
              {{"Retry-After", std::to_string(ctx_->options.retry_after_s)}});
    return Finish();
  }
  c.tried.push_back(c.worker.get());
  c.ResetOutput();
  ctx_->metrics->Attempt(c.worker->address());
  ++c.worker->active;
  ++c.attempts;
  const int id = c.attempt_id = ++next_attempt_id_;
  auto self = shared_from_this();
  Choice* cp = &c;
  std::shared_ptr<Worker> worker = c.worker;
  c.call = GenerateCall::Start(
      c.worker->stub(), c.proto, deadline_,
      [self, cp, id](r1serve::v1::GenerateResponse&& m) {
        self->session_->Post([self, cp, id, m = std::move(m)]() mutable {
          self->OnMessage(*cp, id, std::move(m));
        });
      },
      [self, cp, id, worker](const grpc::Status& status) {
        --worker->active;
        self->session_->Post([self, cp, id, status] { self->OnDone(*cp, id, status); });
      });
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

void Exchange::OnMessage(Choice& c, int id, r1serve::v1::GenerateResponse&& m) {
  if (id != c.attempt_id || done_) return;
  const bool first = !c.got_first;
  if (first) {
    c.got_first = true;
    if (c.in_retry) {
      ctx_->budget.RetryFinished();
      c.in_retry = false;
    }
    c.worker->breaker().OnSuccess();
    if (!first_token_seen_) {
      first_token_seen_ = true;
      ctx_->metrics->TimeToFirstToken(MillisBetween(start_, ctx_->clock->Now()) / 1000.0);
    }
    if (params_.stream && !stream_started_) {
      session_->StartStream();
      stream_started_ = true;
    }
  }
  if (m.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
    c.finish = m.finish_reason();
    c.error_message = m.error_message();
    c.usage.prompt_tokens = m.usage().prompt_tokens();
    c.usage.completion_tokens = m.usage().completion_tokens();
  }
  std::vector<LogprobEntry> lps;
  if (params_.sampling.logprobs) lps = Logprobs(m);
  if (!params_.stream) {
    c.text.append(m.text());
    for (auto& e : lps) c.logprobs.push_back(std::move(e));
    MaybeFinishEarly(c);
    return;
  }
  const std::vector<LogprobEntry>* lp = params_.sampling.logprobs ? &lps : nullptr;
  if (params_.kind == ApiKind::kChat) {
    SplitText d = c.splitter.Feed(m.text());
    if (first || !d.reasoning.empty() || !d.content.empty() || !lps.empty())
      session_->SendChunk(SseData(ChatChunk(meta_, c.index, first, d, lp, "")));
  } else if (first || !m.text().empty() || !lps.empty()) {
    session_->SendChunk(SseData(CompletionChunk(meta_, c.index, m.text(), lp, c.text_offset, "")));
    c.text_offset += m.text().size();
  }
  c.sent = true;
  MaybeFinishEarly(c);
}

// The last message carries the finish reason and usage: the choice is complete without
// waiting for the call's status (one thread hop less at the end of every response). The
// call ends on its own; its OnDone is then ignored.
void Exchange::MaybeFinishEarly(Choice& c) {
  if (c.finish == r1serve::v1::FINISH_REASON_UNSPECIFIED ||
      c.finish == r1serve::v1::FINISH_REASON_ERROR)
    return;
  c.call.reset();
  ChoiceFinished(c);
}

void Exchange::OnDone(Choice& c, int id, const grpc::Status& status) {
  if (id != c.attempt_id || done_ || c.finished) return;
  c.call.reset();
  if (status.ok() && c.finish != r1serve::v1::FINISH_REASON_UNSPECIFIED &&
      c.finish != r1serve::v1::FINISH_REASON_ERROR) {
    if (!c.got_first) c.worker->breaker().OnSuccess();
    return ChoiceFinished(c);
  }
  int code;
  std::string message;
  if (!status.ok()) {
    code = status.error_code();
    message = status.error_message();
  } else if (c.finish == r1serve::v1::FINISH_REASON_ERROR) {
    code = grpc::StatusCode::INTERNAL;
    message = c.error_message.empty() ? "the worker failed" : c.error_message;
  } else {
    code = grpc::StatusCode::UNKNOWN;
    message = "the worker's stream ended without a finish reason";
  }
  if (WorkerFault(code)) c.worker->breaker().OnFailure();
  else if (!c.got_first) c.worker->breaker().OnSuccess();  // the worker answered properly
  if (code == grpc::StatusCode::UNAVAILABLE) c.worker->healthy = false;  // until the next poll
  R1_LOG(INFO) << meta_.id << ": choice " << c.index << " attempt " << c.attempts << " on "
               << c.worker->address() << " failed: " << CodeLabel(code) << ": "
               << EscapeForLog(message);
  if (c.sent) return FailStream(c, message);

  c.last_failure = grpc::Status(static_cast<grpc::StatusCode>(code), message);
  if (!IsRetryableCode(code) || c.attempts >= ctx_->options.max_attempts)
    return ChoiceFailed(c, code, message);
  if (!c.in_retry) {
    if (!ctx_->budget.TryStartRetry()) {
      ctx_->metrics->Retry("budget_exhausted");
      return ChoiceFailed(c, code, message);
    }
    c.in_retry = true;
  }
  ctx_->metrics->Retry(CodeLabel(code));
  c.timer.expires_after(std::chrono::milliseconds(c.backoff.NextMs()));
  Choice* cp = &c;
  c.timer.async_wait([self = shared_from_this(), cp](boost::system::error_code ec) {
    if (!ec) self->Attempt(*cp);
  });
}

void Exchange::ChoiceFinished(Choice& c) {
  c.finished = true;
  if (params_.stream) {
    const char* finish = FinishName(c.finish);
    if (params_.kind == ApiKind::kChat) {
      SplitText rest = c.splitter.Finish();
      if (!rest.reasoning.empty() || !rest.content.empty())
        session_->SendChunk(SseData(ChatChunk(meta_, c.index, false, rest, nullptr, "")));
      session_->SendChunk(SseData(ChatChunk(meta_, c.index, false, {}, nullptr, finish)));
    } else {
      session_->SendChunk(
          SseData(CompletionChunk(meta_, c.index, "", nullptr, c.text_offset, finish)));
    }
  }
  if (++finished_ == choices_.size()) Complete();
}

UsageCounts Exchange::TotalUsage() const {
  UsageCounts u;
  for (const auto& c : choices_) {
    // The prompt counts once per prompt, not once per choice.
    if (c->index % params_.n == 0) u.prompt_tokens += c->usage.prompt_tokens;
    u.completion_tokens += c->usage.completion_tokens;
  }
  return u;
}

void Exchange::Complete() {
  if (params_.stream) {
    if (meta_.include_usage) session_->SendChunk(SseData(UsageChunk(meta_, TotalUsage())));
    session_->SendChunk("data: [DONE]\n\n");
    session_->EndStream();
  } else {
    std::vector<ChoiceOutput> outs;
    for (auto& c : choices_) {
      ChoiceOutput o;
      o.logprobs = params_.sampling.logprobs ? &c->logprobs : nullptr;
      o.finish_reason = FinishName(c->finish);
      if (params_.kind == ApiKind::kChat) {
        ReasoningSplitter split(c->splitter.enabled());
        SplitText a = split.Feed(c->text);
        SplitText b = split.Finish();
        o.reasoning = a.reasoning + b.reasoning;
        o.content = a.content + b.content;
      } else {
        o.content = c->text;
      }
      outs.push_back(std::move(o));
    }
    const bool split = params_.kind == ApiKind::kChat && ctx_->options.reasoning_split;
    session_->SendResponse(200, "application/json",
                           params_.kind == ApiKind::kChat
                               ? ChatResponse(meta_, split, outs, TotalUsage())
                               : CompletionResponse(meta_, outs, TotalUsage()));
  }
  ctx_->metrics->Request(route_, 200);
  ctx_->metrics->EndToEnd(MillisBetween(start_, ctx_->clock->Now()) / 1000.0);
  Finish();
}

void Exchange::ChoiceFailed(Choice& c, int code, const std::string& message) {
  if (stream_started_) return FailStream(c, message);
  FailBeforeFirstByte(code, message);
}

void Exchange::FailBeforeFirstByte(int code, const std::string& message) {
  HttpErrorKind kind = HttpForStatusCode(code);
  http::Headers extra;
  if (kind.http_status == 503 || kind.http_status == 429)
    extra.emplace_back("Retry-After", std::to_string(ctx_->options.retry_after_s));
  SendError(ctx_, *session_, route_, kind.http_status, kind.type, message, "", CodeLabel(code),
            extra);
  Finish();
}

void Exchange::FailStream(Choice& c, const std::string& message) {
  if (params_.kind == ApiKind::kChat) {
    session_->SendChunk(SseData(ChatChunk(meta_, c.index, false, {}, nullptr, "error")));
  } else {
    session_->SendChunk(SseData(CompletionChunk(meta_, c.index, "", nullptr, c.text_offset, "error")));
  }
  session_->SendChunk(SseData(ErrorJson("the worker failed mid-stream: " + message,
                                        "server_error", "", "upstream_error")));
  session_->SendChunk("data: [DONE]\n\n");
  session_->EndStream();
  ctx_->metrics->Request(route_, 200);
  Finish();
}

void Exchange::OnClientGone() {
  if (done_) return;
  ctx_->metrics->Request(route_, 499);
  Finish();
}

// Ends the exchange: cancels what still runs (other choices, a client that left).
void Exchange::Finish() {
  if (done_) return;
  done_ = true;
  for (auto& c : choices_) {
    c->timer.cancel();
    if (c->call) {
      c->call->Cancel();
      if (!c->got_first) c->worker->breaker().OnAbandoned();
    }
    if (c->in_retry) {
      ctx_->budget.RetryFinished();
      c->in_retry = false;
    }
  }
  ctx_->budget.RequestFinished();
  --ctx_->active_requests;
  session_->SetCancelHandler(nullptr);
}

}  // namespace r1::gw
