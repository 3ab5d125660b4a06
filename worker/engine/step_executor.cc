#include "worker/engine/step_executor.h"

#include <algorithm>
#include <tuple>

#include "worker/model/cpu_parallel.h"

namespace r1::engine {

namespace {

// fn(i) for every i in [0, n), one row at a time to whoever runs next on the CPU pool
// (at::parallel_for would run serially in this file, built without OpenMP).
template <typename Fn>
void ForEachRow(size_t n, const Fn& fn) {
  model::ParallelChunks(static_cast<int64_t>(n), 1, [&](int64_t i, int64_t) { fn(static_cast<size_t>(i)); });
}

// Each sampled row's constraint for this step (grammar masks, forced tokens, biases, bans):
// masks of different sequences are independent, so rows go to different threads.
void PrepareRows(const std::vector<RequestState*>& sampled) {
  std::vector<RequestState*> rows;
  for (RequestState* r : sampled) {
    if (r->constraints.any()) rows.push_back(r);
    else r->sampler.constraint.Clear();
  }
  ForEachRow(rows.size(), [&](size_t i) { rows[i]->constraints.Prepare(rows[i]->num_output(), &rows[i]->sampler.constraint); });
}

}  // namespace

void StepExecutor::Launch(const StepPlan& plan) {
  out_ = StepOutput();
  sample_rows_.clear();
  prompt_rows_.clear();
  all_rows_sampled_ = true;
  int64_t rows = 0;
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
    s.want_all_logits = req->wants_prompt_logprobs() && req->num_cached < req->num_prompt;
    if (s.want_all_logits) {
      prompt_rows_.push_back({req, rows, c.num_new, req->num_cached});
      rows += c.num_new;
      all_rows_sampled_ = false;
    } else if (c.sample) {
      rows += 1;
    }
    if (c.sample) sample_rows_.push_back(rows - 1);
    batch.seqs.push_back(std::move(s));
    if (c.sample) out_.sampled.push_back(req);
  }
  // The masks depend on the tokens the last step accepted, not on this step's logits: on an
  // asynchronous device they are made while it computes (the sampler needs them in Finish).
  if (!constraints_during_model_) PrepareConstraints();
  Clock::TimePoint t = clock_->Now();
  logits_ = runner_->Forward(batch);
  out_.model_ms = MillisBetween(t, clock_->Now());
  if (constraints_during_model_) PrepareConstraints();
}

void StepExecutor::PrepareConstraints() {
  Clock::TimePoint t = clock_->Now();
  PrepareRows(out_.sampled);
  out_.constraint_ms = MillisBetween(t, clock_->Now());
}

void StepExecutor::AcceptSamples() {
  Clock::TimePoint t = clock_->Now();
  // Rows with constraints on the pool (a grammar matcher's step is the costly part); the others
  // here, since they may still count their thought (usage.reasoning_tokens) and a step with
  // none constrained should not wake the pool.
  std::vector<size_t> rows;
  for (size_t i = 0; i < out_.sampled.size(); ++i) {
    if (out_.sampled[i]->constraints.any()) rows.push_back(i);
    else out_.sampled[i]->constraints.Accept(out_.samples[i].token);
  }
  ForEachRow(rows.size(), [&](size_t j) { out_.sampled[rows[j]]->constraints.Accept(out_.samples[rows[j]].token); });
  out_.constraint_ms += MillisBetween(t, clock_->Now());
}

StepOutput StepExecutor::Finish() {
  if (logits_.ok() && !prompt_rows_.empty()) ScorePrompts(*logits_);
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
    // Prompt rows are not sampled: the sampler sees one row per sampling chunk.
    at::Tensor sample = all_rows_sampled_
                            ? *logits_
                            : logits_->index_select(
                                  0, at::tensor(sample_rows_, at::kLong).to(logits_->device()));
    absl::StatusOr<std::vector<SampleResult>> s = runner_->Sample(sample, options, states);
    out_.sample_ms = MillisBetween(t, clock_->Now());
    if (s.ok()) {
      out_.samples = std::move(*s);
      AcceptSamples();
    } else {
      out_.status = s.status();
    }
  }
  logits_ = absl::StatusOr<at::Tensor>();
  return std::move(out_);
}

// Row j of a prompt chunk that starts at position p0 holds the logits after token p0 + j,
// which score prompt token p0 + j + 1. Entry 0 (the first prompt token) has none. Positions
// already scored (a chunk recomputed after a preemption) are skipped. The log-softmax, the
// target's value and the top alternatives are computed where the logits are, in slices of
// kScoreRows rows (a prompt chunk's rows times the vocabulary can be large); only the picked
// values cross to the host.
void StepExecutor::ScorePrompts(const at::Tensor& logits) {
  constexpr int64_t kScoreRows = 256;
  for (const PromptRows& pr : prompt_rows_) {
    RequestState* req = pr.req;
    if (req->prompt_logprobs.empty()) {
      TokenInfo first;
      first.id = req->tokens[0];
      req->prompt_logprobs.push_back(first);
    }
    // Rows whose target is a prompt token not scored yet.
    const int64_t from = static_cast<int64_t>(req->prompt_logprobs.size()) - 1 - pr.first_pos;
    const int64_t to = std::min<int64_t>(pr.num_rows, req->num_prompt - 1 - pr.first_pos);
    const int64_t top = std::min<int64_t>(req->req.prompt_logprobs, logits.size(1));
    for (int64_t j0 = std::max<int64_t>(from, 0); j0 < to; j0 += kScoreRows) {
      const int64_t n = std::min(kScoreRows, to - j0);
      std::vector<int64_t> targets(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j)
        targets[static_cast<size_t>(j)] = req->tokens[static_cast<size_t>(pr.first_pos + j0 + j + 1)];
      at::Tensor logp = at::log_softmax(logits.narrow(0, pr.first_row + j0, n).to(at::kFloat), 1);
      at::Tensor idx = at::tensor(targets, at::kLong).to(logp.device()).unsqueeze(1);
      at::Tensor picked = logp.gather(1, idx).squeeze(1).cpu();
      at::Tensor top_vals, top_ids;
      if (top > 0) {
        std::tie(top_vals, top_ids) = logp.topk(top, 1);
        top_vals = top_vals.cpu();
        top_ids = top_ids.cpu();
      }
      const auto got = picked.accessor<float, 1>();
      for (int64_t j = 0; j < n; ++j) {
        TokenInfo info;
        info.id = static_cast<int32_t>(targets[static_cast<size_t>(j)]);
        info.logprob = got[j];
        if (top > 0) {
          const auto vals = top_vals.accessor<float, 2>();
          const auto ids = top_ids.accessor<int64_t, 2>();
          for (int64_t k = 0; k < top; ++k)
            info.top.emplace_back(static_cast<int32_t>(ids[j][k]), vals[j][k]);
        }
        req->prompt_logprobs.push_back(std::move(info));
      }
    }
  }
}

}  // namespace r1::engine
