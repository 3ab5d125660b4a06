#include "worker/engine/output_processor.h"

#include <algorithm>

#include "common/log.h"

namespace r1::engine {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

Delta OutputProcessor::OnToken(RequestState* req, const SampleResult& sample,
                               Clock::TimePoint now) const {
  const int32_t tok = sample.token;
  req->tokens.push_back(tok);  // (the sampler appended it to its own output; the step, to the constraints)
  if (req->first_token_at == Clock::TimePoint{}) req->first_token_at = now;
  req->last_token_at = now;

  Delta d;
  if (req->num_output() == 1) d.prompt_logprobs = std::move(req->prompt_logprobs);
  TokenInfo info;
  info.id = tok;
  if (req->sampling().logprobs) {
    info.logprob = sample.logprob;
    info.top = sample.top;
  }
  d.tokens.push_back(std::move(info));

  FinishReason finish = FinishReason::kNone;
  bool string_stop = false;
  const bool keep_stop = req->req.include_stop_str_in_output;
  if (Contains(req->req.stop_token_ids, tok)) {
    finish = FinishReason::kStop;
    d.matched_stop = config_.codec ? config_.codec->TokenText(tok) : std::to_string(tok);
  } else if (!req->req.ignore_eos && Contains(config_.eos_token_ids, tok)) {
    finish = FinishReason::kStop;
  } else {
    if (req->text) {
      StopChecker::Result s = req->stop.Add(req->text->Add(tok));
      d.text = std::move(s.text);
      if (s.matched >= 0) {
        finish = FinishReason::kStop;
        string_stop = true;
        d.matched_stop = req->stop.stops()[s.matched];
        // The text after the stop string is dropped either way, as in vLLM.
        if (keep_stop) d.text += d.matched_stop;
      }
    }
    if (finish == FinishReason::kNone &&
        ((req->req.max_tokens > 0 && req->num_output() >= req->req.max_tokens) ||
         req->num_tokens() >= config_.max_model_len)) {
      finish = FinishReason::kLength;
    }
  }
  if (finish != FinishReason::kNone && !string_stop && req->text) {
    // The text held back (an incomplete character, a partial stop string) goes out now; a
    // stop token or EOS kept in the output comes after it, as the detokenizer renders it.
    std::string tail = req->text->Finish();
    if (keep_stop && finish == FinishReason::kStop) tail += req->text->Add(tok) + req->text->Finish();
    d.text += req->stop.Add(tail).text;
    d.text += req->stop.Flush();
  }
  if (finish != FinishReason::kNone) Totals(*req, finish, now, &d);
  return d;
}

void OutputProcessor::Resume(RequestState* req) const {
  const std::vector<int32_t>& prior = req->req.resume_output;
  if (prior.empty()) return;
  for (int32_t tok : prior) {
    req->tokens.push_back(tok);
    req->sampler.output.push_back(tok);
    req->constraints.Accept(tok);  // the thought, its budget, the grammar's state
    // As OnToken would: the text they completed went out already; what is held back stays.
    if (req->text && !Contains(req->req.stop_token_ids, tok) &&
        (req->req.ignore_eos || !Contains(config_.eos_token_ids, tok)))
      req->stop.Add(req->text->Add(tok));
  }
  // A sampled row draws exactly one uniform per token (sampler.h, UniformDraw); greedy none.
  if (!req->sampling().greedy()) req->sampler.rng.discard(prior.size());
  if (req->req.max_tokens > 0) req->req.max_tokens += static_cast<int32_t>(prior.size());
}

Delta OutputProcessor::Ending(const RequestState& req, FinishReason why, std::string error,
                              Clock::TimePoint now) const {
  Delta d;
  d.error = std::move(error);
  Totals(req, why, now, &d);
  return d;
}

void OutputProcessor::Totals(const RequestState& req, FinishReason why, Clock::TimePoint now,
                             Delta* d) const {
  d->finish = why;
  d->prompt_tokens = req.num_prompt;
  d->completion_tokens = req.num_output();
  d->reasoning_tokens = req.constraints.reasoning_tokens();
  if (req.constraints.refused() > 0) {
    R1_LOG(WARNING) << req.req.request_id << ": the grammar refused " << req.constraints.refused()
                    << " sampled tokens";
  }
  const Clock::TimePoint arrival = req.req.arrival;
  const bool scheduled = req.scheduled_at != Clock::TimePoint{};
  d->queued_ms = MillisBetween(arrival, scheduled ? req.scheduled_at : now);
  if (req.first_token_at != Clock::TimePoint{}) d->ttft_ms = MillisBetween(arrival, req.first_token_at);
  d->total_ms = MillisBetween(arrival, now);
}

}  // namespace r1::engine
