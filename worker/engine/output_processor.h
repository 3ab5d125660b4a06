// What a step's sampled token does to its request: the token is appended, then stop token ids,
// end-of-sequence ids, stop strings (matched on the detokenized text, which the stop checker
// holds back while it could still be a stop), max_tokens and the model length decide whether
// the request ends. Produces the request's Delta, with the totals on the last one.
// Torch-free and thread-free: unit tested alone (tests/engine/output_processor_test.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "worker/engine/engine.h"
#include "worker/engine/request_state.h"
#include "worker/engine/sample_types.h"

namespace r1::engine {

struct OutputConfig {
  std::vector<int32_t> eos_token_ids;  // the model's (unless the request ignores EOS)
  int32_t max_model_len = 0;
  std::shared_ptr<TextCodec> codec;    // may be null: no text, stop ids and lengths only
};

class OutputProcessor {
 public:
  explicit OutputProcessor(OutputConfig config) : config_(std::move(config)) {}

  // Appends the sampled token to `req` and returns its delta; finish != kNone when the request
  // ends with it (the delta then carries the totals, the text held back flushed). The step
  // (StepExecutor::Finish) has already advanced req->constraints by the token.
  Delta OnToken(RequestState* req, const SampleResult& sample, Clock::TimePoint now) const;

  // A resumed stream (EngineRequest::resume_output): takes in the tokens another worker had
  // delivered as if this one had made them. The sequence holds them after the prompt (their
  // K/V is prefilled like the prompt's); the sampler's stream skips the one uniform each took
  // and its penalties count them; the detokenizer and the stop-string matcher see them (their
  // text was sent, what they hold back is still to come); max_tokens counts on from here.
  void Resume(RequestState* req) const;

  // The last delta of a request that ends for another reason (cancelled, a failed step, shut
  // down), with the totals.
  Delta Ending(const RequestState& req, FinishReason why, std::string error,
               Clock::TimePoint now) const;

  const OutputConfig& config() const { return config_; }

 private:
  void Totals(const RequestState& req, FinishReason why, Clock::TimePoint now, Delta* d) const;

  OutputConfig config_;
};

}  // namespace r1::engine
