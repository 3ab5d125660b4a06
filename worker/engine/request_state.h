// One request as the engine thread holds it: its scheduling state (a Sequence), what was asked,
// the sampler's per-sequence state, its output constraints, its stop checks and detokenizer,
// and its timestamps.
// Torch-free; owned by the engine thread.
#pragma once

#include <memory>
#include <utility>

#include "common/clock.h"
#include "worker/engine/engine.h"
#include "worker/engine/sample_types.h"
#include "worker/engine/sequence.h"
#include "worker/engine/stop_checker.h"
#include "worker/engine/token_constraints.h"

namespace r1::engine {

struct RequestState : Sequence {
  RequestState(EngineRequest r, uint64_t seed, std::unique_ptr<TextStream> text_stream)
      : req(std::move(r)), sampler(seed), stop(req.stop), text(std::move(text_stream)) {
    tokens = req.prompt;
    num_prompt = num_tokens();
    skip_cached_prefix = req.prompt_logprobs >= 0;
    sampler.prompt = req.prompt;
  }
  const SamplingOptions& sampling() const { return req.sampling; }

  EngineRequest req;
  SamplerState sampler;
  TokenConstraints constraints;  // set by the engine when the request arrives
  StopChecker stop;
  std::unique_ptr<TextStream> text;  // null without a tokenizer
  bool left_queue = false;           // counted out of the admission queue (scheduled or ended)
  // The prompt's log-probabilities, filled by prefill steps (entry p for prompt token p) and
  // handed out with the first token.
  std::vector<TokenInfo> prompt_logprobs;
  bool wants_prompt_logprobs() const {
    return req.prompt_logprobs >= 0 && num_output() == 0 &&
           static_cast<int32_t>(prompt_logprobs.size()) < num_prompt;
  }
  Clock::TimePoint scheduled_at{}, first_token_at{}, last_token_at{};
};

}  // namespace r1::engine
