#include "worker/engine/step_executor.h"

#include <ATen/Parallel.h>

namespace r1::engine {

namespace {

// Each sampled row's constraint for this step (grammar masks, forced tokens, biases, bans),
// rows spread over the threads: masks of different sequences are independent. Called before
// the model call, so that on an asynchronous device the masks are made while it computes.
void PrepareConstraints(const std::vector<RequestState*>& sampled) {
  std::vector<RequestState*> rows;
  for (RequestState* r : sampled) {
    if (r->constraints.any()) rows.push_back(r);
    else r->sampler.constraint.Clear();
  }
  at::parallel_for(0, static_cast<int64_t>(rows.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      RequestState* r = rows[static_cast<size_t>(i)];
      r->constraints.Prepare(r->num_output(), &r->sampler.constraint);
    }
  });
}

}  // namespace

void StepExecutor::Launch(const StepPlan& plan) {
  out_ = StepOutput();
  model::StepBatch batch;
  batch.tokens.reserve(static_cast<size_t>(plan.num_tokens));
  for (const ScheduledChunk& c : plan.chunks) {
    auto* req = static_cast<RequestState*>(c.seq);
    batch.tokens.insert(batch.tokens.end(), req->tokens.begin() + req->num_cached,
                        req->tokens.begin() + req->num_cached + c.num_new);
    model::SequenceStep s;
    s.num_cached = req->num_cached;
    s.num_new = c.num_new;
    s.block_table = req->blocks;
    s.want_logits = c.sample;
    batch.seqs.push_back(std::move(s));
    if (c.sample) out_.sampled.push_back(req);
  }
  Clock::TimePoint t = clock_->Now();
  PrepareConstraints(out_.sampled);
  out_.constraint_ms = MillisBetween(t, clock_->Now());
  t = clock_->Now();
  logits_ = runner_->Forward(batch);
  out_.model_ms = MillisBetween(t, clock_->Now());
}

StepOutput StepExecutor::Finish() {
  if (!logits_.ok()) {
    out_.status = logits_.status();
  } else if (!out_.sampled.empty()) {
    std::vector<const SamplingOptions*> options;
    std::vector<SamplerState*> states;
    for (RequestState* r : out_.sampled) {
      options.push_back(&r->sampling());
      states.push_back(&r->sampler);
    }
    Clock::TimePoint t = clock_->Now();
    absl::StatusOr<std::vector<SampleResult>> s = runner_->Sample(*logits_, options, states);
    out_.sample_ms = MillisBetween(t, clock_->Now());
    if (s.ok()) out_.samples = std::move(*s);
    else out_.status = s.status();
  }
  logits_ = absl::StatusOr<at::Tensor>();
  return std::move(out_);
}

}  // namespace r1::engine
