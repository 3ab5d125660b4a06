// One engine step as the model sees it: every sequence's new tokens and where its K/V lives.
// Torch-free: the engine builds it, the model's device paths (and their planners) read it.
#pragma once

#include <cstdint>
#include <vector>

namespace r1::model {

// One sequence's part of a step.
struct SequenceStep {
  int64_t num_cached = 0;            // tokens already in the KV cache
  int64_t num_new = 0;               // tokens fed this step (> 0)
  std::vector<int32_t> block_table;  // blocks covering positions [0, num_cached + num_new)
  bool want_logits = true;           // return logits for the last new token
  // Return logits for every new token instead (the prompt's log-probabilities): num_new rows,
  // the last of them the want_logits row.
  bool want_all_logits = false;
};

struct StepBatch {
  std::vector<int32_t> tokens;     // every sequence's new tokens, concatenated in order
  std::vector<SequenceStep> seqs;

  // True when every sequence feeds one token and wants its logits (a decode step).
  bool is_decode() const {
    for (const SequenceStep& s : seqs)
      if (s.num_new != 1 || !s.want_logits) return false;
    return !seqs.empty();
  }
  int64_t max_len() const {
    int64_t m = 0;
    for (const SequenceStep& s : seqs) m = s.num_cached + s.num_new > m ? s.num_cached + s.num_new : m;
    return m;
  }
};

}  // namespace r1::model
