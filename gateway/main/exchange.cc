#include "gateway/main/exchange.h"

#include "common/log.h"
#include "gateway/main/proto_build.h"
#include "gateway/openai/output_request.h"
#include "gateway/upstream/status_map.h"
#include "gateway/upstream/worker_pool.h"

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

// The prompt's bytes as prefix-aware routing compares them: the chat messages in order (role
// and content, with separators that cannot be confused with text), the completion text, or the
// token ids' bytes.
std::string RoutePrompt(const GenParams& p, size_t prompt) {
  std::string out;
  if (p.kind == ApiKind::kChat) {
    for (const ChatTurn& t : p.messages) {
      out.append(t.role);
      out.push_back('\x1f');
      out.append(t.content);
      out.push_back('\x1e');
    }
  } else if (p.prompts[prompt].text) {
    out = *p.prompts[prompt].text;
  } else {
    const std::vector<int32_t>& ids = p.prompts[prompt].ids;
    out.assign(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
  }
  return out;
}

// Failures after output that another worker can continue from: the worker died or went
// silent, or its engine failed the stream, or (a resumed attempt) its queue was full. The
// call's own deadline (--request-timeout) is not one: another try would take as long.
bool IsResumable(grpc::StatusCode code, AttemptEnd cause) {
  if (cause != AttemptEnd::kCall) return true;
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::ABORTED: return true;
    default: return false;
  }
}

}  // namespace

void Exchange::Choice::ResetOutput() {
  started = false;
  output_ids.clear();
  splitter = ReasoningSplitter(splitter.enabled());
  text.clear();
  logprobs.clear();
  text_offset = 0;
  finish = r1serve::v1::FINISH_REASON_UNSPECIFIED;
  usage = {};
}

Exchange::Exchange(GatewayContext* ctx, std::shared_ptr<ResponseSink> sink,
                   std::shared_ptr<Strand> strand, GenParams params, std::string route)
    : ctx_(ctx),
      sink_(std::move(sink)),
      strand_(std::move(strand)),
      params_(std::move(params)),
      route_(std::move(route)) {}

Exchange::~Exchange() = default;

void Exchange::Start() {
  start_ = ctx_->clock->Now();
  meta_.kind = params_.kind;
  meta_.id = (params_.kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-") + RandomId(ctx_->random);
  meta_.created = UnixSeconds(*ctx_->clock);
  meta_.model = params_.model;
  meta_.include_usage = params_.stream && params_.include_usage;
  if (!params_.user.empty() || !params_.ignored_fields.empty()) {
    std::string ignored;
    for (const std::string& f : params_.ignored_fields) ignored += (ignored.empty() ? "" : ",") + f;
    R1_LOG(INFO) << meta_.id << ": model " << EscapeForLog(params_.model) << ", user "
                 << EscapeForLog(params_.user, 100)
                 << (ignored.empty() ? "" : ", unknown fields ignored: " + EscapeForLog(ignored));
  }
  const bool split = params_.kind == ApiKind::kChat && ctx_->options.reasoning_split;
  const size_t prompts = params_.kind == ApiKind::kChat ? 1 : params_.prompts.size();
  for (size_t p = 0; p < prompts; ++p) {
    auto g = std::make_unique<Group>(ctx_->retry.NewState(), strand_->NewTimer());
    BuildGenerateRequest(params_, p, meta_.id, &g->proto);
    // Without a seed the gateway picks it, so that a resumed stream samples what the first
    // worker would have.
    if (!params_.sampling.seed) g->proto.mutable_sampling()->set_seed(ctx_->random->Next());
    g->route = std::make_shared<const RouteKey>(MakeRouteKey(RoutePrompt(params_, p)));
    for (uint32_t k = 0; k < params_.n; ++k) {
      auto c = std::make_unique<Choice>(static_cast<int>(choices_.size()),
                                        ctx_->retry.NewState(), strand_->NewTimer(), split,
                                        NewToolParser());
      ChoiceRequest(g->proto, k, &c->proto);
      c->group = g.get();
      g->choices.push_back(c.get());
      choices_.push_back(std::move(c));
    }
    groups_.push_back(std::move(g));
  }
  sink_->SetCancelHandler([self = shared_from_this()] { self->OnClientGone(); });
  sink_->SetFlowHandler([self = shared_from_this()](bool pause) { self->OnFlow(pause); });
  for (auto& g : groups_) StartGroupAttempt(*g);
}

void Exchange::NoWorker(Choice& c, const std::optional<grpc::Status>& last_failure) {
  if (last_failure) return ChoiceFailed(c, *last_failure);
  const std::string message = ctx_->pool->AllBreakersOpen()
                                  ? "every worker's circuit breaker is open; retry later"
                                  : "no healthy worker; retry later";
  if (stream_started_) return FailStream(c, message);
  ctx_->metrics->Rejected("no_worker");
  SendError(ctx_, *sink_, route_, 503, "server_error", message, "", "no_worker_available",
            {{"Retry-After", std::to_string(ctx_->options.retry_after_s)}});
  Finish();
}

// The group's call from scratch: every choice of the prompt, none of which has output.
void Exchange::StartGroupAttempt(Group& g) {
  if (done_) return;
  std::optional<WorkerLease> lease =
      ctx_->pool->Pick(g.tried, g.route.get(), /*resume=*/false, params_.model,
                       static_cast<int64_t>(g.choices.size()));
  if (!lease) return NoWorker(*g.choices.front(), g.last_failure);
  g.tried.push_back(&lease->worker());
  for (Choice* c : g.choices) {
    c->in_call = true;
    c->answered = false;
    c->ResetOutput();
    c->tools = NewToolParser();
  }
  g.retry.AttemptStarted();
  g.attempt = Launch(std::move(*lease), g, &Exchange::OnGroupMessage, &Exchange::OnGroupEnd);
}

// The attempt checked choice_index (in range, the choice not finished in the call).
void Exchange::OnGroupMessage(Group& g, r1serve::v1::GenerateResponse&& m) {
  if (done_) return;
  Choice& c = *g.choices[m.choice_index()];
  if (!c.in_call || c.finished) return;
  if (!c.answered) NoteAnswered(c, g.retry);
  if (m.finish_reason() != r1serve::v1::FINISH_REASON_ERROR) return OnOutput(c, std::move(m));
  // The worker failed this choice; the call goes on for the others.
  std::shared_ptr<Attempt> attempt = g.attempt;
  const grpc::Status failure(grpc::StatusCode::INTERNAL, m.error_message().empty()
                                                            ? "the worker failed"
                                                            : m.error_message());
  OnOutput(c, std::move(m));
  if (done_ || c.finished || !attempt) return;
  Detach(c);
  ChoiceFailedOn(c, *attempt, failure);
}

void Exchange::Detach(Choice& c) {
  c.in_call = false;
  c.tried.insert(c.tried.end(), c.group->tried.begin(), c.group->tried.end());
}

void Exchange::OnGroupEnd(Group& g, const grpc::Status& outcome) {
  if (done_) return;
  std::shared_ptr<Attempt> attempt = std::move(g.attempt);
  std::vector<Choice*> left;
  bool any_output = false;
  for (Choice* c : g.choices) {
    any_output |= c->started || c->finished;
    if (c->in_call && !c->finished) left.push_back(c);
  }
  if (left.empty()) return;
  // OK means every choice finished (Attempt::Outcome): not here.
  const grpc::StatusCode code = outcome.error_code();
  R1_LOG(INFO) << meta_.id << ": call for " << g.choices.size() << " choice(s) (attempt "
               << g.tried.size() << ") on " << attempt->worker().address()
               << " failed: " << CodeLabel(code) << ": " << EscapeForLog(outcome.error_message());
  g.last_failure = outcome;
  if (!any_output) {
    // Nothing of the prompt reached anyone: the whole call is tried again.
    for (Choice* c : left) c->in_call = false;
    const RetryDecision d = ctx_->retry.OnFailure(g.retry, code, attempt->got_first());
    if (d.verdict == RetryVerdict::kBudgetExhausted) ctx_->metrics->Retry("budget_exhausted");
    if (d.verdict != RetryVerdict::kRetry) return ChoiceFailed(*left.front(), outcome);
    ctx_->metrics->Retry(CodeLabel(code));
    Group* gp = &g;
    g.backoff->Start(d.delay, [self = shared_from_this(), gp] { self->StartGroupAttempt(*gp); });
    return;
  }
  // Each unfinished choice goes on alone.
  for (Choice* c : left) {
    if (done_) return;
    Detach(*c);
    ChoiceFailedOn(*c, *attempt, outcome);
  }
}

void Exchange::StartAttempt(Choice& c) {
  if (done_) return;
  std::optional<WorkerLease> lease =
      ctx_->pool->Pick(c.tried, c.group->route.get(), /*resume=*/!c.output_ids.empty(),
                       params_.model);
  if (!lease) return NoWorker(c, c.last_failure);
  c.tried.push_back(&lease->worker());
  c.answered = false;
  if (c.output_ids.empty()) {  // a fresh try; a resume continues the output and its parsers
    c.ResetOutput();
    c.tools = NewToolParser();
  }
  if (c.output_ids.empty()) c.retry.AttemptStarted();  // a resume is no retry
  c.attempt = Launch(std::move(*lease), c, &Exchange::OnMessage, &Exchange::OnAttemptEnd);
}

template <typename Unit>
std::shared_ptr<Attempt> Exchange::Launch(
    WorkerLease lease, Unit& unit,
    void (Exchange::*on_message)(Unit&, r1serve::v1::GenerateResponse&&),
    void (Exchange::*on_end)(Unit&, const grpc::Status&)) {
  ctx_->metrics->Attempt(lease.worker().address());
  auto self = shared_from_this();
  Unit* u = &unit;
  std::shared_ptr<Attempt> a = Attempt::Start(
      ctx_->attempt_env, strand_, std::move(lease), unit.proto,
      [self, u, on_message](r1serve::v1::GenerateResponse&& m) {
        ((*self).*on_message)(*u, std::move(m));
      },
      [self, u, on_end](const grpc::Status& outcome) { ((*self).*on_end)(*u, outcome); });
  if (reading_paused_) a->PauseReading(true);
  return a;
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

void Exchange::NoteAnswered(Choice& c, RetryState& retry) {
  c.answered = true;
  retry.Answered();
  if (!first_token_seen_) {
    first_token_seen_ = true;
    ctx_->metrics->TimeToFirstToken(MillisBetween(start_, ctx_->clock->Now()) / 1000.0);
  }
  if (params_.stream && !stream_started_) {
    sink_->StartStream();
    stream_started_ = true;
  }
}

void Exchange::OnMessage(Choice& c, r1serve::v1::GenerateResponse&& m) {
  if (done_ || c.finished) return;
  if (!c.answered) NoteAnswered(c, c.retry);
  OnOutput(c, std::move(m));
}

void Exchange::OnOutput(Choice& c, r1serve::v1::GenerateResponse&& m) {
  const bool first = !c.started;
  c.started = true;
  c.output_ids.insert(c.output_ids.end(), m.token_ids().begin(), m.token_ids().end());
  Group& g = *c.group;
  if (!g.has_prompt && (!m.prompt_text().empty() || m.prompt_logprobs_size() > 0)) {
    g.has_prompt = true;
    g.prompt.mutable_prompt_text()->swap(*m.mutable_prompt_text());
    g.prompt.mutable_prompt_logprobs()->Swap(m.mutable_prompt_logprobs());
  }
  if (m.finish_reason() != r1serve::v1::FINISH_REASON_UNSPECIFIED) {
    c.finish = m.finish_reason();
    c.usage.prompt_tokens = m.usage().prompt_tokens();
    c.usage.completion_tokens = m.usage().completion_tokens();
    c.usage.reasoning_tokens = m.usage().reasoning_tokens();
  }
  std::vector<LogprobEntry> lps;
  if (params_.sampling.logprobs) lps = Logprobs(m);
  if (first && params_.echo) {
    m.mutable_text()->insert(0, g.prompt.prompt_text());
    if (params_.sampling.logprobs) {
      // The prompt's tokens first, the first of them without a log-probability.
      std::vector<LogprobEntry> prompt;
      for (const auto& lp : g.prompt.prompt_logprobs()) {
        LogprobEntry e;
        e.token = lp.token();
        e.logprob = lp.logprob();
        e.has_logprob = !prompt.empty();
        for (const auto& t : lp.top_logprobs()) e.top.emplace_back(t.token(), t.logprob());
        prompt.push_back(std::move(e));
      }
      lps.insert(lps.begin(), std::make_move_iterator(prompt.begin()),
                 std::make_move_iterator(prompt.end()));
    }
  }
  if (!params_.stream) {
    c.text.append(m.text());
    for (auto& e : lps) c.logprobs.push_back(std::move(e));
    MaybeFinishEarly(c);
    return;
  }
  const std::vector<LogprobEntry>* lp = params_.sampling.logprobs ? &lps : nullptr;
  if (params_.kind == ApiKind::kChat) {
    SendChatDelta(c, first, c.splitter.Feed(m.text()), lp);
  } else if (first || !m.text().empty() || !lps.empty()) {
    sink_->SendChunk(SseData(CompletionChunk(meta_, c.index, m.text(), lp, c.text_offset, "")));
    c.text_offset += m.text().size();
  }
  MaybeFinishEarly(c);
}

// The last message carries the finish reason and usage: the choice is complete without
// waiting for the call's status (one thread hop less at the end of every response). The
// attempt then ends on its own, giving its lease back when the call's status comes.
void Exchange::MaybeFinishEarly(Choice& c) {
  if (c.finish == r1serve::v1::FINISH_REASON_UNSPECIFIED ||
      c.finish == r1serve::v1::FINISH_REASON_ERROR)
    return;
  c.attempt.reset();
  ChoiceFinished(c);
}

void Exchange::OnAttemptEnd(Choice& c, const grpc::Status& outcome) {
  if (done_ || c.finished) return;
  std::shared_ptr<Attempt> attempt = std::move(c.attempt);
  if (outcome.ok()) return ChoiceFinished(c);
  ChoiceFailedOn(c, *attempt, outcome);
}

void Exchange::ChoiceFailedOn(Choice& c, const Attempt& attempt, const grpc::Status& outcome) {
  const grpc::StatusCode code = outcome.error_code();
  R1_LOG(INFO) << meta_.id << ": choice " << c.index << " attempt " << c.tried.size()
               << " on " << attempt.worker().address() << " failed: " << CodeLabel(code)
               << ": " << EscapeForLog(outcome.error_message());
  c.last_failure = outcome;
  if (!c.output_ids.empty() && TryResume(c, attempt, outcome)) return;
  // Streamed output the client has cannot be taken back.
  if (params_.stream && c.started) return FailStream(c, outcome.error_message());

  // From scratch: nothing of this choice counts any more.
  c.ResetOutput();
  c.proto.clear_resume();
  c.proto.set_max_tokens(params_.max_tokens);
  const RetryDecision d = ctx_->retry.OnFailure(c.retry, code, c.answered);
  if (d.verdict == RetryVerdict::kBudgetExhausted) ctx_->metrics->Retry("budget_exhausted");
  if (d.verdict != RetryVerdict::kRetry) return ChoiceFailed(c, outcome);
  ctx_->metrics->Retry(CodeLabel(code));
  Choice* cp = &c;
  c.backoff->Start(d.delay, [self = shared_from_this(), cp] { self->StartAttempt(*cp); });
}

bool Exchange::TryResume(Choice& c, const Attempt& attempt, const grpc::Status& outcome) {
  const uint32_t delivered = static_cast<uint32_t>(c.output_ids.size());
  if (!IsResumable(outcome.error_code(), attempt.end_cause())) return false;
  if (params_.max_tokens > 0 && delivered >= params_.max_tokens) return false;
  const std::string reason = attempt.end_cause() == AttemptEnd::kCall
                                 ? CodeLabel(outcome.error_code())
                                 : AttemptEndName(attempt.end_cause());
  if (c.resumes >= ctx_->options.max_resumes) {
    R1_LOG(WARNING) << meta_.id << ": choice " << c.index << " is not resumed again: "
                    << c.resumes << " resume(s) already (--max-resumes)";
    ctx_->metrics->Resume("limit_reached");
    return false;
  }
  ++c.resumes;
  R1_LOG(WARNING) << meta_.id << ": choice " << c.index << " resumes on another worker after "
                  << delivered << " token(s): worker " << attempt.worker().address() << " "
                  << reason << " (resume " << c.resumes << " of at most "
                  << ctx_->options.max_resumes << ")";
  ctx_->metrics->Resume(reason);
  // The first worker's last message may have said ERROR; the new attempt decides.
  c.finish = r1serve::v1::FINISH_REASON_UNSPECIFIED;
  c.proto.set_max_tokens(params_.max_tokens > 0 ? params_.max_tokens - delivered : 0);
  *c.proto.mutable_resume()->mutable_output_token_ids() = {c.output_ids.begin(),
                                                            c.output_ids.end()};
  StartAttempt(c);
  return true;
}

void Exchange::ChoiceFinished(Choice& c) {
  c.finished = true;
  c.retry.Finished();
  if (params_.stream) {
    if (params_.kind == ApiKind::kChat) {
      SendChatDelta(c, false, c.splitter.Finish(), nullptr);
      ToolDelta tail = c.tools.Finish();
      if (!tail.content.empty())
        sink_->SendChunk(SseData(ChatChunk(meta_, c.index, false, {"", tail.content}, nullptr, "")));
      sink_->SendChunk(SseData(
          ChatChunk(meta_, c.index, false, {}, nullptr, FinishReasonOf(c, c.tools.num_calls()))));
    } else {
      sink_->SendChunk(
          SseData(CompletionChunk(meta_, c.index, "", nullptr, c.text_offset, FinishName(c.finish))));
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
    u.reasoning_tokens += c->usage.reasoning_tokens;
  }
  return u;
}

void Exchange::Complete() {
  if (params_.stream) {
    if (meta_.include_usage) sink_->SendChunk(SseData(UsageChunk(meta_, TotalUsage())));
    sink_->SendChunk("data: [DONE]\n\n");
    sink_->EndStream();
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
        if (params_.include_reasoning) o.reasoning = a.reasoning + b.reasoning;
        ToolCallParser tools = NewToolParser();
        ToolDelta t1 = tools.Feed(a.content + b.content);
        ToolDelta t2 = tools.Finish();
        o.content = t1.content + t2.content;
        o.tool_calls = std::move(t1.calls);
        if (!params_.parallel_tool_calls && o.tool_calls.size() > 1) o.tool_calls.resize(1);
        o.finish_reason = FinishReasonOf(*c, static_cast<int>(o.tool_calls.size()));
      } else {
        o.content = c->text;
      }
      outs.push_back(std::move(o));
    }
    const bool split = params_.kind == ApiKind::kChat && ctx_->options.reasoning_split;
    sink_->SendResponse(200, "application/json",
                        params_.kind == ApiKind::kChat
                            ? ChatResponse(meta_, split, outs, TotalUsage())
                            : CompletionResponse(meta_, outs, TotalUsage()),
                        {});
  }
  ctx_->metrics->Request(route_, 200);
  ctx_->metrics->EndToEnd(MillisBetween(start_, ctx_->clock->Now()) / 1000.0);
  Finish();
}

ToolCallParser Exchange::NewToolParser() {
  const bool parse = params_.kind == ApiKind::kChat && !params_.tools_json.empty() &&
                     params_.tool_choice != ToolChoice::kNone;
  Random* random = ctx_->random;
  return ToolCallParser(parse, [random] { return "call_" + RandomId(random); });
}

// As vLLM: a choice that called tools and stopped finishes with "tool_calls".
const char* Exchange::FinishReasonOf(const Choice& c, int tool_calls) const {
  if (tool_calls > 0 && c.finish == r1serve::v1::FINISH_REASON_STOP) return "tool_calls";
  return FinishName(c.finish);
}

void Exchange::SendChatDelta(Choice& c, bool first, SplitText d,
                             const std::vector<LogprobEntry>* lps) {
  if (!params_.include_reasoning) d.reasoning.clear();
  ToolDelta t = c.tools.Feed(d.content);
  d.content = std::move(t.content);
  // parallel_tool_calls false: the first call only.
  if (!params_.parallel_tool_calls)
    while (!t.calls.empty() && t.calls.back().index > 0) t.calls.pop_back();
  const bool has_lps = lps && !lps->empty();
  if (first || !d.reasoning.empty() || !d.content.empty() || !t.calls.empty() || has_lps)
    sink_->SendChunk(SseData(ChatChunk(meta_, c.index, first, d, lps, "", &t.calls)));
}

void Exchange::ChoiceFailed(Choice& c, const grpc::Status& status) {
  if (stream_started_) return FailStream(c, status.error_message());
  FailBeforeFirstByte(status);
}

void Exchange::FailBeforeFirstByte(const grpc::Status& status) {
  const HttpErrorKind kind = HttpForStatus(status.error_code());
  http::Headers extra;
  if (kind.http_status == 503 || kind.http_status == 429)
    extra.emplace_back("Retry-After", std::to_string(ctx_->options.retry_after_s));
  // A worker's refusal of a field names it (a schema keyword the grammar engine lacks, a
  // token id outside its vocabulary): the 400 names the request field.
  std::string message = status.error_message();
  const std::string param = status.error_code() == grpc::StatusCode::INVALID_ARGUMENT
                                ? ParamOfWorkerError(params_, &message)
                                : std::string();
  // gRPC's own words for a lost connection ("Transport closed", "Socket closed") do not say
  // whose: the client learns it was the worker.
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      message.find("worker") == std::string::npos)
    message = "the worker is unavailable: " + message;
  SendError(ctx_, *sink_, route_, kind.http_status, kind.type, message, param,
            CodeLabel(status.error_code()), extra);
  Finish();
}

void Exchange::FailStream(Choice& c, const std::string& message) {
  if (params_.kind == ApiKind::kChat) {
    sink_->SendChunk(SseData(ChatChunk(meta_, c.index, false, {}, nullptr, "error")));
  } else {
    sink_->SendChunk(
        SseData(CompletionChunk(meta_, c.index, "", nullptr, c.text_offset, "error")));
  }
  sink_->SendChunk(SseData(ErrorJson("the worker failed mid-stream: " + message,
                                     "server_error", "", "upstream_error")));
  sink_->SendChunk("data: [DONE]\n\n");
  sink_->EndStream();
  ctx_->metrics->Request(route_, 200);
  Finish();
}

// The client's output queue reached its cap (pause) or drained (resume): every running
// attempt stops or resumes reading its worker stream, so a client that reads slowly slows its
// choices down instead of filling the gateway's memory.
void Exchange::OnFlow(bool pause) {
  if (done_ || reading_paused_ == pause) return;
  reading_paused_ = pause;
  for (auto& g : groups_)
    if (g->attempt) g->attempt->PauseReading(pause);
  for (auto& c : choices_)
    if (c->attempt) c->attempt->PauseReading(pause);
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
  for (auto& g : groups_) {
    g->backoff->Cancel();
    if (g->attempt) g->attempt->Cancel();
    g->attempt.reset();
    g->retry.Finished();
  }
  for (auto& c : choices_) {
    c->backoff->Cancel();
    if (c->attempt) c->attempt->Cancel();
    c->attempt.reset();
    c->retry.Finished();
  }
  --ctx_->active_requests;
  sink_->SetCancelHandler(nullptr);
  sink_->SetFlowHandler(nullptr);
}

}  // namespace r1::gw
