// Runs one planned step: assembles the model's batch from the scheduler's plan (each chunk's
// new tokens and block table), queues the model call, then samples a token for every chunk
// that reaches its sequence's end. Launch and Finish are split so the engine can deliver the
// previous step's tokens while an asynchronous device computes this one.
#pragma once

#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine/model_runner.h"
#include "worker/engine/request_state.h"
#include "worker/engine/scheduler.h"

namespace r1::engine {

struct StepOutput {
  absl::Status status;                 // a failed step ends every request in its plan
  std::vector<RequestState*> sampled;  // the chunks that sampled, in plan order
  std::vector<SampleResult> samples;   // their tokens
  double model_ms = 0, sample_ms = 0;  // host time in the model call and in sampling
  // Host time making the rows' constraints (masks) and advancing them by the sampled tokens.
  double constraint_ms = 0;
};

class StepExecutor {
 public:
  // constraints_during_model: the rows' constraints (grammar masks) are made after the model
  // call is queued, so on an asynchronous device (CUDA) they cost no step time while the device
  // computes; false makes them before the call, as a baseline for bench/constrained_step_bench.
  StepExecutor(ModelRunner* runner, const Clock* clock, bool constraints_during_model = true)
      : runner_(runner), clock_(clock), constraints_during_model_(constraints_during_model) {}

  // Queues the model call for `plan` (on a synchronous device, computes it).
  void Launch(const StepPlan& plan);
  // Waits for the step and samples its tokens, and advances the sampled rows' constraints
  // (grammar matchers, thought budgets) by them, rows spread over the CPU threads.
  StepOutput Finish();

 private:
  // Rows of the step's logits: which to sample, and the chunks scoring their prompt.
  struct PromptRows {
    RequestState* req;
    int64_t first_row, num_rows, first_pos;
  };
  void ScorePrompts(const at::Tensor& logits);
  void PrepareConstraints();
  void AcceptSamples();

  ModelRunner* runner_;
  const Clock* clock_;
  bool constraints_during_model_;
  std::vector<int64_t> sample_rows_;
  std::vector<PromptRows> prompt_rows_;
  bool all_rows_sampled_ = true;
  absl::StatusOr<at::Tensor> logits_;
  StepOutput out_;
};

}  // namespace r1::engine
