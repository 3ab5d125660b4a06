#include "worker/service/stream_message.h"

namespace r1::service {

r1serve::v1::FinishReason ToProtoFinishReason(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kStop: return r1serve::v1::FINISH_REASON_STOP;
    case engine::FinishReason::kLength: return r1serve::v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kCancelled: return r1serve::v1::FINISH_REASON_CANCELLED;
    case engine::FinishReason::kError: return r1serve::v1::FINISH_REASON_ERROR;
    case engine::FinishReason::kNone: break;
  }
  return r1serve::v1::FINISH_REASON_UNSPECIFIED;
}

namespace {
void SetLogprob(const engine::TokenInfo& t, engine::TextCodec* codec, r1serve::v1::TokenLogprob* lp) {
  lp->set_token_id(t.id);
  if (codec) lp->set_token(codec->TokenText(t.id));
  lp->set_logprob(t.logprob);
  for (const auto& [id, p] : t.top) {
    auto* top = lp->add_top_logprobs();
    top->set_token_id(id);
    if (codec) top->set_token(codec->TokenText(id));
    top->set_logprob(p);
  }
}
}  // namespace

void AppendDelta(engine::Delta&& d, engine::TextCodec* codec, bool logprobs,
                 r1serve::v1::GenerateResponse* msg) {
  for (const engine::TokenInfo& t : d.prompt_logprobs) SetLogprob(t, codec, msg->add_prompt_logprobs());
  for (const engine::TokenInfo& t : d.tokens) {
    msg->add_token_ids(t.id);
    if (logprobs) SetLogprob(t, codec, msg->add_logprobs());
  }
  msg->mutable_text()->append(d.text);
  if (d.finish != engine::FinishReason::kNone) {
    msg->set_finish_reason(ToProtoFinishReason(d.finish));
    msg->mutable_usage()->set_prompt_tokens(d.prompt_tokens);
    msg->mutable_usage()->set_completion_tokens(d.completion_tokens);
    msg->mutable_usage()->set_reasoning_tokens(d.reasoning_tokens);
    msg->mutable_timings()->set_queued_ms(d.queued_ms);
    msg->mutable_timings()->set_time_to_first_token_ms(d.ttft_ms);
    msg->mutable_timings()->set_total_ms(d.total_ms);
    msg->set_error_message(d.error);
    msg->set_matched_stop(d.matched_stop);
  }
}

}  // namespace r1::service
